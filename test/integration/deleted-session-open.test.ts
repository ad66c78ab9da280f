// A session deleted while its owner opens it for a run (the run started; the org runtime, or the
// record read, was slow): the deletion's forget_session finds no run to abort yet, so the owner
// must refuse the session once the open finishes. The run never reaches the model, and nothing of
// the session (record, stream, transcript) comes back.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_ORG } from "@pi-fleet/contracts";
import { RuntimeCache } from "@pi-fleet/pi-runtime";
import { connectRedis, createKeys, type Redis } from "@pi-fleet/redis";
import { EventLog, SessionRecords } from "@pi-fleet/streams";
import { waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

type Json = Record<string, unknown>;
let stack: InProcessStack;
let redis: Redis;
/** Extra time the worker's org runtime lookup takes (ms): a cold or rebuilt runtime. */
let runtimeDelayMs = 0;
const originalGet = RuntimeCache.prototype.get;
/** Extra time recording a run's `aborted` end takes (ms): a slow Redis or a busy worker. */
let abortRecordDelayMs = 0;
const originalTransition = EventLog.prototype.transitionRun;

/** A new project `name` with one session: the session's id and path. */
async function newSession(name: string): Promise<{ sid: string; base: string }> {
  await stack.call("POST", "/v1/projects", { name });
  const sid = ((await stack.call("POST", `/v1/projects/${name}/sessions`)).json as Json).id as string;
  return { sid, base: `/v1/projects/${name}/sessions/${sid}` };
}

/** Queues a prompt on session `base` and waits until its run is running; the run's id. */
async function runningPrompt(base: string, text: string): Promise<string> {
  const { runId } = (await stack.call("POST", `${base}/prompt`, { text })).json as { runId: string };
  await waitFor(
    async () => ((await stack.call("GET", `${base}/runs/${runId}`)).json as Json).status === "running",
    { timeoutMs: 15_000, intervalMs: 20 },
  );
  return runId;
}

/** The run's events on the project activity stream after `run_started`. */
async function endsOf(project: string, runId: string): Promise<string[]> {
  const keys = createKeys(stack.prefix);
  const entries = await new EventLog(redis, keys, 1000).range(
    { org: DEFAULT_ORG, project, activity: true },
    "0",
    1000,
  );
  return entries
    .map((e) => JSON.parse(e.data) as { type: string; runId?: string })
    .filter((e) => e.runId === runId && e.type !== "run_queued" && e.type !== "run_started")
    .map((e) => e.type);
}

beforeAll(async () => {
  EventLog.prototype.transitionRun = async function (
    this: EventLog,
    ...args: Parameters<typeof originalTransition>
  ) {
    if (args[4] === "aborted" && abortRecordDelayMs > 0) {
      await new Promise((resolve) => setTimeout(resolve, abortRecordDelayMs));
    }
    return originalTransition.apply(this, args);
  } as typeof originalTransition;
  RuntimeCache.prototype.get = async function (this: RuntimeCache, ...args: Parameters<typeof originalGet>) {
    if (runtimeDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, runtimeDelayMs));
    return originalGet.apply(this, args);
  } as typeof originalGet;
  stack = await startInProcessStack(inject("redisUrl"), "deleted-open");
  redis = await connectRedis(inject("redisUrl"), "command", "test-deleted-open");
});

afterAll(async () => {
  RuntimeCache.prototype.get = originalGet;
  EventLog.prototype.transitionRun = originalTransition;
  await stack?.close();
  await redis?.quit();
});

describe("a session deleted while its run opens it", () => {
  it("never runs: no model call, no record, stream or transcript afterwards", async () => {
    const { sid, base } = await newSession("opening");
    runtimeDelayMs = 600;
    const runId = await runningPrompt(base, "[[tag:opening]] [[reply:late]]");
    // The run started and its owner waits for the runtime: delete the session now.
    expect((await stack.call("DELETE", base)).status).toBe(200);
    runtimeDelayMs = 0;
    // The DELETE answered after the run's end (the owner's forget waits for it); a little more for
    // anything a run that did go on would write.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const keys = createKeys(stack.prefix);
    const calledModel = stack.fake.requests.some((r) => JSON.stringify(r.body).includes("[[tag:opening]]"));
    expect({
      calledModel,
      file: existsSync(join(stack.workspace, DEFAULT_ORG, "sessions", "opening", `${sid}.jsonl`)),
      record: await redis.exists(keys.session(DEFAULT_ORG, "opening", sid)),
      stream: await redis.exists(keys.stream(DEFAULT_ORG, "opening", sid)),
      openRuns: await redis.zrange(keys.projectOpenRuns(DEFAULT_ORG, "opening"), "0", "-1"),
    }).toEqual({ calledModel: false, file: false, record: 0, stream: 0, openRuns: [] });
    // The deletion waited for the run's end: the project's activity says it was aborted.
    expect(await endsOf("opening", runId)).toEqual(["run_aborted"]);
  }, 30_000);

  it("records a deleted session's aborted run before its data goes, also when recording it is slow", async () => {
    const { base } = await newSession("slow-end");
    const runId = await runningPrompt(base, "[[delay:20]] [[deltas:500]]");
    abortRecordDelayMs = 300;
    try {
      expect((await stack.call("DELETE", base)).status).toBe(200);
    } finally {
      abortRecordDelayMs = 0;
    }
    // Without the owner's wait the data went first and the end was lost (NORUN): nothing here.
    expect(await endsOf("slow-end", runId)).toEqual(["run_aborted"]);
  }, 30_000);

  it("a forget_session for a session that is still registered leaves it usable, transcript kept", async () => {
    const { sid, base } = await newSession("kept");
    const finished = async (text: string) => {
      const { runId } = (await stack.call("POST", `${base}/prompt`, { text })).json as Json;
      let status = "";
      await waitFor(
        async () => {
          status = ((await stack.call("GET", `${base}/runs/${runId}`)).json as Json).status as string;
          return status !== "queued" && status !== "running";
        },
        { timeoutMs: 15_000 },
      );
      return status;
    };
    expect(await finished("[[reply:one]] a")).toBe("finished");
    const answer = await stack.gateway.services.control.send(DEFAULT_ORG, "kept", "forget_session", {
      session: sid,
    });
    expect(answer).toMatchObject({ kind: "reply", reply: { ok: true } });
    expect(existsSync(join(stack.workspace, DEFAULT_ORG, "sessions", "kept", `${sid}.jsonl`))).toBe(true);
    // Reopened for the next run, with its history: the model is sent the first exchange again.
    expect(await finished("[[reply:two]] b")).toBe("finished");
    const last = stack.fake.requests.filter((r) => JSON.stringify(r.body).includes("[[reply:two]] b")).at(-1);
    expect(JSON.stringify(last?.body)).toContain("[[reply:one]] a");
  }, 30_000);

  it("a run whose session is deleted without its owner being told stops at its next write", async () => {
    // The deletion's forget_session can miss the owner (it answers within 2 s or is not waited for):
    // the run's next event append finds the record gone, and the run stops there.
    const { sid, base } = await newSession("untold");
    const runId = await runningPrompt(base, "[[delay:20]] [[deltas:500]]");
    const keys = createKeys(stack.prefix);
    const file = join(stack.workspace, DEFAULT_ORG, "sessions", "untold", `${sid}.jsonl`);
    // Only the record goes (as the deletion's first step does); nobody tells the owner.
    await new SessionRecords(new EventLog(redis, keys, 1000)).delete(DEFAULT_ORG, "untold", sid);
    const run = keys.run(DEFAULT_ORG, "untold", runId);
    // Aborted, as when the deletion's forget_session reaches the owner in time.
    await waitFor(async () => (await redis.hget(run, "status")) === "aborted", { timeoutMs: 5000 });
    // Stopped long before its 500 deltas (10 s), with its transcript removed by the owner.
    expect(await redis.zrange(keys.projectOpenRuns(DEFAULT_ORG, "untold"), "0", "-1")).toEqual([]);
    await waitFor(() => !existsSync(file), { timeoutMs: 5000, message: "the transcript removed" });
  }, 30_000);
});
