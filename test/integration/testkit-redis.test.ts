// Checks the testkit's redis-server spawner against a real redis-server binary (never the
// machine's own Redis on 6379): startup, restart on the same port, persistence, stop, errors.

import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { findFreePort, pingRedis, type SpawnedRedis, spawnRedis, waitFor } from "@pi-fleet/testkit";
import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";

const started: SpawnedRedis[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((r) => r.stop()));
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function withClient<T>(url: string, fn: (c: Redis) => Promise<T>): Promise<T> {
  const client = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await client.connect();
    return await fn(client);
  } finally {
    client.disconnect();
  }
}

describe("spawnRedis", () => {
  it("starts a private redis-server that answers PING, restarts on the same port, and stops", async () => {
    const redis = await spawnRedis();
    started.push(redis);
    expect(redis.port).not.toBe(6379);
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    expect(existsSync(redis.dir)).toBe(true);
    expect(isAlive(redis.pid)).toBe(true);
    expect(await pingRedis(redis.port)).toBe(true);

    const firstPid = redis.pid;
    await redis.restart();
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    expect(redis.pid).not.toBe(firstPid);
    expect(isAlive(firstPid)).toBe(false);
    expect(await pingRedis(redis.port)).toBe(true);

    const pid = redis.pid;
    await redis.stop();
    expect(isAlive(pid)).toBe(false);
    expect(await pingRedis(redis.port, "127.0.0.1", 300)).toBe(false);
    expect(existsSync(redis.dir)).toBe(false);
    await redis.stop(); // idempotent
  });

  it("keeps data across kill + restart with appendonly, loses it without", async () => {
    const durable = await spawnRedis({ appendonly: true });
    const volatile = await spawnRedis();
    started.push(durable, volatile);
    expect(durable.port).not.toBe(volatile.port);
    for (const r of [durable, volatile]) await withClient(r.url, (c) => c.set("k", "v"));

    durable.kill("SIGKILL");
    await durable.restart();
    await volatile.restart();
    expect(await withClient(durable.url, (c) => c.get("k"))).toBe("v");
    expect(await withClient(volatile.url, (c) => c.get("k"))).toBeNull();
  });

  it("passes extraArgs through and reports startup failures with the server log", async () => {
    const redis = await spawnRedis({ extraArgs: ["--maxmemory", "12mb"] });
    started.push(redis);
    const cfg = await withClient(redis.url, (c) => c.config("GET", "maxmemory"));
    expect(cfg).toEqual(["maxmemory", String(12 * 1024 * 1024)]);

    await expect(spawnRedis({ extraArgs: ["--no-such-option", "1"] })).rejects.toThrow(/redis-server/i);
  });

  it("throws an install hint when the binary cannot be found", async () => {
    const saved = { bin: process.env.REDIS_SERVER_BIN, path: process.env.PATH };
    try {
      delete process.env.REDIS_SERVER_BIN;
      process.env.PATH = "/nonexistent-dir";
      await expect(spawnRedis()).rejects.toThrow(/apt-get install redis-server/);
      process.env.REDIS_SERVER_BIN = "/nonexistent-dir/redis-server";
      await expect(spawnRedis()).rejects.toThrow(/REDIS_SERVER_BIN/);
    } finally {
      if (saved.bin === undefined) delete process.env.REDIS_SERVER_BIN;
      else process.env.REDIS_SERVER_BIN = saved.bin;
      process.env.PATH = saved.path;
    }
  });
});

describe("spawnRedis orphan protection", () => {
  it("takes redis-server and its temp dir down when the spawning process is SIGKILLed", async () => {
    const script = `
      import { spawnRedis } from "@pi-fleet/testkit";
      const r = await spawnRedis({ appendonly: true });
      process.stdout.write(JSON.stringify({ pid: r.pid, port: r.port, dir: r.dir }) + "\\n");
      setInterval(() => {}, 1000);
    `;
    const child = spawn(
      process.execPath,
      ["--conditions=@pi-fleet/source", "--input-type=module", "-e", script],
      {
        cwd: fileURLToPath(new URL("../..", import.meta.url)),
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    try {
      const [line] = (await once(createInterface({ input: child.stdout! }), "line")) as [string];
      const info = JSON.parse(line) as { pid: number; port: number; dir: string };
      expect(isAlive(info.pid)).toBe(true);
      expect(await pingRedis(info.port)).toBe(true);
      expect(existsSync(info.dir)).toBe(true);

      child.kill("SIGKILL");
      await waitFor(() => !isAlive(info.pid) && !existsSync(info.dir), {
        timeoutMs: 10_000,
        message: "redis-server and its dir gone after the parent was killed",
      });
      expect(await pingRedis(info.port, "127.0.0.1", 300)).toBe(false);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });
});

describe("findFreePort", () => {
  it("returns a port that can be bound right away", async () => {
    const port = await findFreePort();
    expect(port).toBeGreaterThan(0);
    const srv = createServer();
    await new Promise<void>((resolve, reject) => {
      srv.once("error", reject);
      srv.listen(port, "127.0.0.1", () => resolve());
    });
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  });
});
