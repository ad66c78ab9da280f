// Session commands that outlast the gateway's ordinary 30 s control wait: a user `bash` is waited
// for up to its own time cap (it answered PF_ERR_CONTROL_TIMEOUT at 30 s while it ran on), and a
// command whose worker stopped owning the project (another worker took the lease over while it ran)
// answers 503 within seconds instead of waiting out its whole timeout.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { connectRedis, createKeys, type Redis } from "@pi-fleet/redis";
import { waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

type Json = Record<string, unknown>;

let stack: InProcessStack;
let redis: Redis;

beforeAll(async () => {
  // A long lease TTL: the worker renews (and would notice a lost lease) only every 10 s, so the
  // gateway's own look at the lease is what ends the "lost" case below.
  stack = await startInProcessStack(inject("redisUrl"), "long-commands", {
    env: { PI_FLEET_LEASE_TTL_MS: "30000" },
  });
  redis = await connectRedis(inject("redisUrl"), "command", "test-long-commands");
});

afterAll(async () => {
  await redis?.quit();
  await stack?.close();
});

/** A new project and session; returns the commands path and the project dir. */
async function newSession(name: string): Promise<{ path: string; projectDir: string }> {
  expect((await stack.call("POST", "/v1/projects", { name })).status).toBe(200);
  const projectDir = ((await stack.call("GET", `/v1/projects/${name}`)).json as Json).projectDir as string;
  const sid = ((await stack.call("POST", `/v1/projects/${name}/sessions`, {})).json as Json).id as string;
  return { path: `/v1/projects/${name}/sessions/${sid}/commands`, projectDir };
}

describe.concurrent("long-running session commands", () => {
  it("waits for a bash that runs longer than 30 s and answers its output", async () => {
    const { path } = await newSession("long-bash");
    const started = Date.now();
    const res = await stack.call("POST", path, { type: "bash", command: "sleep 31; echo finished" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(31_000);
    expect(res).toMatchObject({
      status: 200,
      json: { type: "bash", success: true, data: { output: "finished\n", exitCode: 0 } },
    });
  });

  it("answers 503 within seconds when the worker running the command lost the project", async () => {
    const { path, projectDir } = await newSession("lost-owner");
    const command = stack.call("POST", path, { type: "bash", command: "touch started; sleep 25" });
    await waitFor(() => existsSync(join(projectDir, "started")), { timeoutMs: 10_000 });
    // Another worker takes the project over (as after this one paused past its lease).
    const lease = createKeys(stack.prefix).lease("default", "lost-owner");
    const holder = await redis.get(lease);
    expect(holder).toMatch(/^w1:/);
    await redis.set(lease, "w-other:999999", "PX", 60_000);
    const tookOverAt = Date.now();
    const res = await command;
    expect(Date.now() - tookOverAt).toBeLessThan(6_000);
    expect(res).toMatchObject({ status: 503, json: { code: "PF_ERR_SERVICE_UNAVAILABLE" } });
    expect((res.json as Json).error).toMatch(/stopped owning the project/);
    // Give the project back so the stack closes cleanly.
    await redis.set(lease, holder ?? "", "PX", 30_000);
  });
});

describe("a gateway shutting down while a command runs", () => {
  it("answers the waiting command 503 at once instead of holding its shutdown", async () => {
    const own = await startInProcessStack(inject("redisUrl"), "long-commands-close");
    try {
      expect((await own.call("POST", "/v1/projects", { name: "closing" })).status).toBe(200);
      const projectDir = ((await own.call("GET", "/v1/projects/closing")).json as Json).projectDir as string;
      const sid = ((await own.call("POST", "/v1/projects/closing/sessions", {})).json as Json).id as string;
      const command = own.call("POST", `/v1/projects/closing/sessions/${sid}/commands`, {
        type: "bash",
        command: "touch started; sleep 20",
      });
      await waitFor(() => existsSync(join(projectDir, "started")), { timeoutMs: 10_000 });
      const closingAt = Date.now();
      await own.gateway.close();
      expect(Date.now() - closingAt).toBeLessThan(5_000);
      const res = await command;
      expect(res).toMatchObject({ status: 503, json: { code: "PF_ERR_SERVICE_UNAVAILABLE" } });
      expect((res.json as Json).error).toMatch(/shutting down/);
    } finally {
      await own.close();
    }
  });
});
