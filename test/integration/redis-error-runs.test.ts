// A Redis error around a run's start or end never wedges its session. The worker's command
// connection gives up after two retries, so a blip of a second or two makes a single call fail
// while the lease survives. Such a failure is injected here into the worker's EventLog calls (the
// product code runs unchanged around it):
// - the start fails: the run is tried again shortly and runs (it used to fail its BullMQ job and
//   stay `queued` for ever, and every later prompt of the session waited behind it);
// - recording the end fails once: it is retried and recorded;
// - recording the end fails every time: the run stays `running`, and the next prompt of the
//   session ends it as `interrupted` (`worker_error`) and runs.
import { EventLog } from "@pi-fleet/streams";
import { waitFor } from "@pi-fleet/testkit";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

type Json = Record<string, unknown>;
let stack: InProcessStack;
const restores: (() => void)[] = [];

/** Makes the next `times` calls of `method` for which `when(args)` holds reject like ioredis does. */
function failNext<K extends "startRun" | "transitionRun">(
  method: K,
  times: number,
  when: (args: Parameters<EventLog[K]>) => boolean = () => true,
): { failed: () => number } {
  const original = EventLog.prototype[method];
  let failed = 0;
  const patched = function (this: EventLog, ...args: Parameters<EventLog[K]>) {
    if (failed < times && when(args)) {
      failed++;
      return Promise.reject(new Error("Reached the max retries per request limit (which is 2)."));
    }
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  };
  EventLog.prototype[method] = patched as EventLog[K];
  restores.push(() => {
    EventLog.prototype[method] = original;
  });
  return { failed: () => failed };
}

async function newSession(name: string): Promise<string> {
  await stack.call("POST", "/v1/projects", { name });
  return ((await stack.call("POST", `/v1/projects/${name}/sessions`)).json as Json).id as string;
}

async function prompt(base: string, text: string): Promise<string> {
  const res = await stack.call("POST", `${base}/prompt`, { text });
  expect(res.status).toBeLessThan(300);
  return (res.json as Json).runId as string;
}

async function runEnd(base: string, runId: string, timeoutMs = 20_000): Promise<Json> {
  return waitFor(
    async () => {
      const run = (await stack.call("GET", `${base}/runs/${runId}`)).json as Json;
      return ["finished", "failed", "aborted", "interrupted", "cancelled"].includes(run.status as string)
        ? run
        : undefined;
    },
    { timeoutMs, message: `run ${runId} ended` },
  );
}

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "redis-error-runs");
});

afterEach(() => {
  for (const restore of restores.splice(0)) restore();
});

afterAll(async () => {
  await stack?.close();
});

describe("a Redis error around a run", () => {
  it("at its start: the run is tried again and runs; the session goes on", async () => {
    const base = `/v1/projects/err-start/sessions/${await newSession("err-start")}`;
    const start = failNext("startRun", 1);
    const a = await prompt(base, "[[reply:first]]");
    const b = await prompt(base, "[[reply:second]]");
    expect(await runEnd(base, a)).toMatchObject({ status: "finished" });
    expect(await runEnd(base, b)).toMatchObject({ status: "finished" });
    expect(start.failed()).toBe(1);
  });

  it("recording its end once: the end is recorded on a retry", async () => {
    const base = `/v1/projects/err-end-once/sessions/${await newSession("err-end-once")}`;
    const end = failNext("transitionRun", 1, (args) => args[4] === "finished");
    const a = await prompt(base, "[[reply:recorded]]");
    expect(await runEnd(base, a)).toMatchObject({ status: "finished" });
    expect(end.failed()).toBe(1);
  });

  it("recording its end every time: the next prompt ends it as interrupted and runs", async () => {
    const base = `/v1/projects/err-end/sessions/${await newSession("err-end")}`;
    const end = failNext("transitionRun", 100, (args) => args[4] === "finished");
    const a = await prompt(base, "[[reply:stranded]]");
    // Every attempt (4, over ~1.75 s) failed: the run is stranded `running`.
    await waitFor(() => end.failed() >= 4, { timeoutMs: 10_000, message: "every attempt failed" });
    for (const restore of restores.splice(0)) restore();
    expect(((await stack.call("GET", `${base}/runs/${a}`)).json as Json).status).toBe("running");
    const b = await prompt(base, "[[reply:after]]");
    expect(await runEnd(base, b)).toMatchObject({ status: "finished" });
    expect(await runEnd(base, a)).toMatchObject({ status: "interrupted", reason: "worker_error" });
  });
});
