// A run recorded `queued` whose job never reached the queue (its gateway died between the enqueue
// script and the BullMQ add) must not hold its session forever: once it is older than
// PI_FLEET_LOST_RUN_MS, the owner records it `failed` when a later run of the session waits
// behind it, and the later run proceeds. A younger one is left alone (its job may be on its way).
import { DEFAULT_ORG } from "@pi-fleet/contracts";
import { projectQueueOptions, type RunJobData, runJobOptions } from "@pi-fleet/queue";
import { connectRedis, createKeys, type Redis } from "@pi-fleet/redis";
import { EventLog } from "@pi-fleet/streams";
import { waitFor } from "@pi-fleet/testkit";
import { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const LOST_RUN_MS = 1500;
let stack: InProcessStack;
let redis: Redis;

type Json = Record<string, unknown>;

beforeAll(async () => {
  const url = inject("redisUrl");
  stack = await startInProcessStack(url, "lost-run", { env: { PI_FLEET_LOST_RUN_MS: String(LOST_RUN_MS) } });
  redis = await connectRedis(url, "command", "test-lost-run");
});

afterAll(async () => {
  await stack?.close();
  await redis?.quit();
});

describe("lost runs", () => {
  it("fails a queued run without a job once it is old enough; the run behind it proceeds", async () => {
    await stack.call("POST", "/v1/projects", { name: "lost" });
    const sid = ((await stack.call("POST", "/v1/projects/lost/sessions")).json as Json).id as string;
    const base = `/v1/projects/lost/sessions/${sid}`;
    // What a gateway that died after the enqueue script leaves behind: a run record, no job.
    const events = new EventLog(redis, createKeys(stack.prefix), 1000);
    const ref = { org: DEFAULT_ORG, project: "lost", session: sid };
    const lost = await events.enqueueRun(ref, "lost-run-0001", { firstMessage: "x", promptChars: 1 });
    const started = Date.now();

    const next = (await stack.call("POST", `${base}/prompt`, { text: "[[reply:after the lost one]]" }))
      .json as Json;
    const runOf = async (id: string) => (await stack.call("GET", `${base}/runs/${id}`)).json as Json;
    await waitFor(async () => (await runOf(next.runId as string)).status === "finished", {
      timeoutMs: 20_000,
    });

    const failed = await runOf(lost.runId);
    expect(failed).toMatchObject({
      status: "failed",
      error: "the run never reached the queue (the gateway failed while queueing it)",
    });
    // Not before it was PI_FLEET_LOST_RUN_MS old: it might still have been on its way.
    expect(Date.parse(failed.endedAt as string) - started).toBeGreaterThanOrEqual(LOST_RUN_MS - 50);
    // On the stream: the lost run's run_failed comes before the next run's run_started.
    const entries = await events.range(ref, "0", 1000);
    const order = entries
      .map((e) => JSON.parse(e.data) as { type: string; runId?: string })
      .filter((e) => e.type === "run_failed" || e.type === "run_started")
      .map((e) => `${e.type}:${e.runId === lost.runId ? "lost" : "next"}`);
    expect(order).toEqual(["run_failed:lost", "run_started:next"]);
  });

  it("leaves an old queued run alone while a job of it waits in the queue (an owner's retry)", async () => {
    await stack.call("POST", "/v1/projects", { name: "slow" });
    const sid = ((await stack.call("POST", "/v1/projects/slow/sessions")).json as Json).id as string;
    const base = `/v1/projects/slow/sessions/${sid}`;
    const keys = createKeys(stack.prefix);
    const events = new EventLog(redis, keys, 1000);
    const ref = { org: DEFAULT_ORG, project: "slow", session: sid };
    const old = await events.enqueueRun(ref, "slow-run-0001", { firstMessage: "x", promptChars: 1 });
    // Its job under a retry id (as an earlier owner's reconcile adds it), due only after
    // PI_FLEET_LOST_RUN_MS has passed: the run behind it checks the head meanwhile.
    const queue = new Queue<RunJobData>(keys.projectTag(DEFAULT_ORG, "slow"), {
      connection: redis,
      ...projectQueueOptions(keys.queuePrefix),
    });
    const data: RunJobData = { ...ref, sessionId: sid, runId: old.runId, seq: 1, text: "[[reply:late]]" };
    await queue.add("run", data, {
      ...runJobOptions(old.runId),
      jobId: `${old.runId}-e0`,
      delay: LOST_RUN_MS + 1500,
    });
    await queue.close();

    const next = (await stack.call("POST", `${base}/prompt`, { text: "[[reply:behind]]" })).json as Json;
    const runOf = async (id: string) => (await stack.call("GET", `${base}/runs/${id}`)).json as Json;
    await waitFor(async () => (await runOf(next.runId as string)).status === "finished", {
      timeoutMs: 20_000,
    });
    expect((await runOf(old.runId)).status).toBe("finished");
  });
});
