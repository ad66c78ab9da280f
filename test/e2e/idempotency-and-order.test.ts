// Run semantics against a real single-node process: Idempotency-Key dedupes (also under
// concurrency) without a second model call; sessions of one project run concurrently; runs of
// one session run one after the other, in order.

import {
  type FakeLlm,
  lastUserText,
  openSse,
  type SseConnection,
  startFakeLlm,
  uniquePrefix,
} from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { collectUntil, endsRun, isEvent } from "../support/events.ts";
import {
  createProject,
  createSession,
  eventsUrl,
  prompt,
  type RunView,
  registerFakeProvider,
  waitForRunEnd,
} from "../support/http.ts";
import { type Stack, startStack, stopAllStacks } from "../support/stack.ts";

let llm: FakeLlm;
let stack: Stack;
let projectId: string;
const sockets: SseConnection[] = [];

beforeAll(async () => {
  llm = await startFakeLlm();
  stack = await startStack({ redisUrl: inject("redisUrl"), prefix: uniquePrefix("e2e idempotency order") });
  await registerFakeProvider(stack.url, llm);
  projectId = await createProject(stack.url, "Ordering");
});

afterAll(async () => {
  for (const s of sockets) s.close();
  await stopAllStacks();
  await llm?.close();
});

/** Model calls whose last user message contains `tag`. */
function callsFor(tag: string): number {
  return llm.requests.filter((r) => lastUserText(r.body).includes(tag)).length;
}

function interval(run: RunView): [number, number] {
  expect(run.startedAt, `run ${run.id} has startedAt`).toBeTypeOf("string");
  expect(run.endedAt, `run ${run.id} has endedAt`).toBeTypeOf("string");
  return [Date.parse(run.startedAt!), Date.parse(run.endedAt!)];
}

describe("idempotency", () => {
  it("the same Idempotency-Key returns the same run and calls the model once", async () => {
    const sid = await createSession(stack.url, projectId);
    const text = "[[tag:idem-sequential]] [[reply:once]]";
    const headers = { "Idempotency-Key": "e2e-key-sequential" };
    const a = await prompt(stack.url, projectId, sid, text, headers);
    const b = await prompt(stack.url, projectId, sid, text, headers);
    expect(b.runId).toBe(a.runId);
    expect(b.offset).toBe(a.offset);
    const run = await waitForRunEnd(stack.url, projectId, sid, a.runId);
    expect(run.status).toBe("finished");
    // After the run ended the key still maps to it, whatever the body says.
    const c = await prompt(stack.url, projectId, sid, text, headers);
    expect(c.runId).toBe(a.runId);
    const d = await prompt(stack.url, projectId, sid, "[[tag:idem-different-text]]", headers);
    expect(d.runId).toBe(a.runId);
    // Keys are per session: the same key on another session is another run.
    const otherSid = await createSession(stack.url, projectId);
    const e = await prompt(stack.url, projectId, otherSid, "[[tag:idem-other-session]]", headers);
    expect(e.runId).not.toBe(a.runId);
    expect((await waitForRunEnd(stack.url, projectId, otherSid, e.runId)).status).toBe("finished");

    // Concurrent requests with one key: one run.
    const concurrentText = "[[tag:idem-concurrent]] [[delay:20]] [[reply:once more]]";
    const same = { "Idempotency-Key": "e2e-key-concurrent" };
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => prompt(stack.url, projectId, sid, concurrentText, same)),
    );
    const runIds = new Set(answers.map((x) => x.runId));
    expect(runIds.size).toBe(1);
    const concurrentRun = answers[0]!.runId;
    expect(concurrentRun).not.toBe(a.runId);
    expect((await waitForRunEnd(stack.url, projectId, sid, concurrentRun)).status).toBe("finished");

    // A different key (and no key) makes a new run.
    const fresh = await prompt(stack.url, projectId, sid, "[[tag:idem-other]]", {
      "Idempotency-Key": "other",
    });
    expect(fresh.runId).not.toBe(a.runId);
    expect(fresh.runId).not.toBe(concurrentRun);
    await waitForRunEnd(stack.url, projectId, sid, fresh.runId);

    expect(callsFor("idem-sequential")).toBe(1);
    expect(callsFor("idem-concurrent")).toBe(1);
    expect(callsFor("idem-different-text")).toBe(0);
    expect(callsFor("idem-other-session")).toBe(1);

    // The stream has exactly one run_queued per distinct run.
    const sse = await openSse(eventsUrl(stack.url, projectId, sid, "0"));
    sockets.push(sse);
    const events = await collectUntil(sse, endsRun(fresh.runId), 15_000);
    const queued = events.filter(isEvent("run_queued"));
    expect(queued.map((e) => (e.json as { runId: string }).runId)).toEqual([
      a.runId,
      concurrentRun,
      fresh.runId,
    ]);
    sse.close();
  });
});

describe("ordering", () => {
  it("runs two sessions of one project concurrently", async () => {
    const [s1, s2] = await Promise.all([
      createSession(stack.url, projectId),
      createSession(stack.url, projectId),
    ]);
    const [p1, p2] = await Promise.all([
      prompt(stack.url, projectId, s1, "[[tag:conc-a]] [[delay:30]] [[deltas:20]]"),
      prompt(stack.url, projectId, s2, "[[tag:conc-b]] [[delay:30]] [[deltas:20]]"),
    ]);
    expect(p1.position).toBe(0);
    expect(p2.position).toBe(0);
    const [r1, r2] = await Promise.all([
      waitForRunEnd(stack.url, projectId, s1, p1.runId),
      waitForRunEnd(stack.url, projectId, s2, p2.runId),
    ]);
    expect([r1.status, r2.status]).toEqual(["finished", "finished"]);
    const [a0, a1] = interval(r1);
    const [b0, b1] = interval(r2);
    // Each run takes 20+ deltas × 30 ms; serial execution could not overlap.
    expect(a0 < b1 && b0 < a1, `intervals ${a0}-${a1} and ${b0}-${b1} overlap`).toBe(true);
    expect(callsFor("conc-a")).toBe(1);
    expect(callsFor("conc-b")).toBe(1);
  });

  it("runs two prompts of one session one after the other", async () => {
    const sid = await createSession(stack.url, projectId);
    const sse = await openSse(eventsUrl(stack.url, projectId, sid, "0"));
    sockets.push(sse);
    const first = await prompt(stack.url, projectId, sid, "[[tag:seq-1]] [[delay:30]] [[deltas:10]]");
    const second = await prompt(stack.url, projectId, sid, "[[tag:seq-2]] [[reply:two]]");
    expect(first.position).toBe(0);
    expect(second.position).toBe(1);

    const events = await collectUntil(sse, endsRun(second.runId), 30_000);
    const at = (type: string, runId: string) => events.findIndex(isEvent(type, runId));
    expect(at("run_finished", first.runId)).toBeGreaterThan(at("run_started", first.runId));
    expect(at("run_queued", second.runId)).toBeLessThan(at("run_finished", first.runId));
    expect(at("run_started", second.runId)).toBeGreaterThan(at("run_finished", first.runId));
    expect(at("run_finished", second.runId)).toBe(events.length - 1);

    const r1 = await waitForRunEnd(stack.url, projectId, sid, first.runId);
    const r2 = await waitForRunEnd(stack.url, projectId, sid, second.runId);
    expect([r1.status, r2.status]).toEqual(["finished", "finished"]);
    expect([r1.seq, r2.seq]).toEqual([1, 2]);
    expect(interval(r2)[0]).toBeGreaterThanOrEqual(interval(r1)[1]);
    // The model saw the second prompt only after the first exchange was complete.
    const secondCall = llm.requests.find((r) => lastUserText(r.body).includes("seq-2"));
    const firstCall = llm.requests.find((r) => lastUserText(r.body).includes("seq-1"));
    expect(secondCall && firstCall && secondCall.receivedAt >= firstCall.receivedAt).toBe(true);
    sse.close();
  });
});
