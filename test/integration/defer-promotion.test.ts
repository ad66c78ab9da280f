// A run queued behind its session's open run waits for it in the worker for 500 ms, then gives its
// queue slot back and is deferred (delayed in the project queue) for PI_FLEET_DEFER_RETRY_MS. The
// end of the open run on the owner promotes it, so it starts right away rather than when its
// delay runs out. The delay is set to a minute here: only the promotion can start the run in time.
import { DEFAULT_ORG } from "@pi-fleet/contracts";
import { projectQueueOptions, type RunJobData } from "@pi-fleet/queue";
import { connectRedis, createKeys, type Redis } from "@pi-fleet/redis";
import { waitFor } from "@pi-fleet/testkit";
import { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const DEFER_RETRY_MS = 60_000;
let stack: InProcessStack;
let redis: Redis;

type Json = Record<string, unknown>;

beforeAll(async () => {
  const url = inject("redisUrl");
  stack = await startInProcessStack(url, "defer-promotion", {
    env: { PI_FLEET_DEFER_RETRY_MS: String(DEFER_RETRY_MS) },
  });
  redis = await connectRedis(url, "command", "test-defer-promotion");
});

afterAll(async () => {
  await stack?.close();
  await redis?.quit();
});

describe("deferred runs", () => {
  it("start as soon as the run they wait for ends, not when their delay runs out", async () => {
    await stack.call("POST", "/v1/projects", { name: "defer" });
    const sid = ((await stack.call("POST", "/v1/projects/defer/sessions")).json as Json).id as string;
    const base = `/v1/projects/defer/sessions/${sid}`;
    const keys = createKeys(stack.prefix);
    const queue = new Queue<RunJobData>(keys.projectTag(DEFAULT_ORG, "defer"), {
      connection: redis,
      ...projectQueueOptions(keys.queuePrefix),
    });
    try {
      // About 2 s: long enough for the run behind it to give up waiting and be deferred.
      const first = (await stack.call("POST", `${base}/prompt`, { text: "[[delay:400]] [[deltas:5]]" }))
        .json as Json;
      const second = (await stack.call("POST", `${base}/prompt`, { text: "[[reply:next]]" })).json as Json;
      const runOf = async (id: unknown) => (await stack.call("GET", `${base}/runs/${id}`)).json as Json;

      await waitFor(async () => (await queue.getJobState(second.runId as string)) === "delayed", {
        timeoutMs: 10_000,
      });
      expect((await runOf(first.runId)).status).toBe("running");

      await waitFor(async () => (await runOf(second.runId)).status === "finished", { timeoutMs: 20_000 });
      const a = await runOf(first.runId);
      const b = await runOf(second.runId);
      expect(a.status).toBe("finished");
      // Started after the first run ended (in order) and long before its one-minute delay was due.
      const gap = Date.parse(b.startedAt as string) - Date.parse(a.endedAt as string);
      expect(gap).toBeGreaterThanOrEqual(0);
      expect(gap).toBeLessThan(10_000);
    } finally {
      await queue.close();
    }
  });
});
