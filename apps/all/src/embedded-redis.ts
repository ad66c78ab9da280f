/**
 * Single-node convenience: when nothing answers at REDIS_URL and the user did not set it, run a
 * `redis-server` child with its data under the workspace (AOF on, `noeviction`), so
 * `npm start` works on a fresh machine. Production runs a managed Redis instead.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { delimiter, join, resolve } from "node:path";
import { pingRedis } from "@pi-fleet/redis";

/** A running embedded Redis. */
export interface EmbeddedRedis {
  url: string;
  stop(): Promise<void>;
}

/** Finds `redis-server` on PATH (or `REDIS_SERVER_BIN`); undefined when absent. */
export function findRedisServer(): string | undefined {
  const explicit = process.env.REDIS_SERVER_BIN;
  if (explicit) return existsSync(explicit) ? explicit : undefined;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const candidate = join(dir, "redis-server");
    if (dir && existsSync(candidate)) return candidate;
  }
  for (const candidate of ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]) {
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Starts `redis-server` on `port` with data in `dataDir`; resolves once it answers PING.
 * @throws when the binary is missing or the server does not come up within 10 s
 */
export async function startEmbeddedRedis(
  binary: string,
  dataDir: string,
  port: number,
): Promise<EmbeddedRedis> {
  const dir = resolve(dataDir);
  await mkdir(dir, { recursive: true });
  const child: ChildProcess = spawn(
    binary,
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--appendonly",
      "yes",
      "--appendfsync",
      "everysec",
      "--save",
      "",
      "--maxmemory-policy",
      "noeviction",
      "--protected-mode",
      "yes",
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  const url = `redis://127.0.0.1:${port}`;
  const exited = new Promise<void>((resolveExit) => child.once("exit", () => resolveExit()));
  const deadline = Date.now() + 10_000;
  while (!(await pingRedis(url, 200))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`embedded redis-server did not start on port ${port}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}
