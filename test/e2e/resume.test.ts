// Resumable SSE against a real single-node process: a client that keeps disconnecting and
// resuming (Last-Event-ID header and ?after=, alternately) sees exactly what an uninterrupted
// client sees; ?after=0 replays everything retained; a cursor the stream cannot serve yields an
// explicit stream_reset ("lost" for a cursor ahead of the stream, "trimmed" behind retention).

import {
  type FakeLlm,
  openSse,
  type SseConnection,
  type SseEvent,
  startFakeLlm,
  uniquePrefix,
} from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { collectUntil, endsRun, isEvent, typeOf, wire } from "../support/events.ts";
import {
  api,
  createProject,
  createSession,
  eventsUrl,
  type PromptResult,
  prompt,
  registerFakeProvider,
  waitForRunEnd,
} from "../support/http.ts";
import { type Stack, startStack, stopAllStacks } from "../support/stack.ts";

let llm: FakeLlm;
let stack: Stack;
/** A second process with a tiny stream retention (PI_FLEET_STREAM_MAXLEN=100). */
let small: Stack;
let projectId: string;
const sockets: SseConnection[] = [];

/** One long run shared by the tests below (its session has no other run). */
let sid: string;
let run: PromptResult;
let reference: SseEvent[];

async function open(url: string, lastEventId?: string): Promise<SseConnection> {
  const conn = await openSse(url, lastEventId === undefined ? {} : { lastEventId });
  sockets.push(conn);
  expect(conn.status, conn.errorBody).toBe(200);
  return conn;
}

const view = (events: SseEvent[]) => events.map((e) => ({ id: e.id, data: e.data }));

beforeAll(async () => {
  llm = await startFakeLlm();
  const redisUrl = inject("redisUrl");
  [stack, small] = await Promise.all([
    startStack({ redisUrl, prefix: uniquePrefix("e2e resume") }),
    startStack({
      redisUrl,
      prefix: uniquePrefix("e2e resume trimmed"),
      env: { PI_FLEET_STREAM_MAXLEN: "100" },
    }),
  ]);
  await Promise.all([registerFakeProvider(stack.url, llm), registerFakeProvider(small.url, llm)]);
  projectId = await createProject(stack.url, "Resume");
});

afterAll(async () => {
  for (const s of sockets) s.close();
  await stopAllStacks();
  await llm?.close();
});

describe("SSE resume", () => {
  it("a client that disconnects and resumes sees exactly the uninterrupted stream", async () => {
    sid = await createSession(stack.url, projectId);
    run = await prompt(stack.url, projectId, sid, "[[delay:5]] [[deltas:300]]");
    const { runId, offset } = run;

    const steady = await open(eventsUrl(stack.url, projectId, sid, offset));
    const steadyDone = collectUntil(steady, endsRun(runId), 60_000);

    // Disconnect after k events, five times; resume alternately with ?after= and Last-Event-ID.
    const chunks = [9, 31, 17, 64, 45];
    const got: SseEvent[] = [];
    let cursor = offset;
    let resumes = 0;
    let liveResumes = 0;
    let done = false;
    for (let i = 0; !done; i++) {
      const viaHeader = i % 2 === 1;
      const conn = viaHeader
        ? await open(eventsUrl(stack.url, projectId, sid), cursor)
        : await open(eventsUrl(stack.url, projectId, sid, cursor));
      if (i > 0) resumes++;
      if (i > 0 && !steady.events.some(endsRun(runId))) liveResumes++;
      const k = chunks[i] ?? Number.POSITIVE_INFINITY;
      for (let n = 0; n < k; n++) {
        const e = await conn.next(15_000);
        got.push(e);
        if (endsRun(runId)(e)) {
          done = true;
          break;
        }
      }
      conn.close();
      await conn.closed;
      const lastId = got.at(-1)?.id;
      expect(lastId, "every resumed event carries an id").toBeTypeOf("string");
      cursor = lastId!;
    }
    expect(resumes).toBe(chunks.length);
    // Most resumes happened while the run was still producing (replay + live merge, not just replay).
    expect(liveResumes).toBeGreaterThanOrEqual(3);

    reference = await steadyDone;
    expect(typeOf(reference[0]!)).toBe("run_queued");
    expect(wire(reference.at(-1)!)).toMatchObject({ type: "run_finished", runId });
    expect(reference.filter(isEvent("message_update")).length).toBeGreaterThanOrEqual(300);
    expect(got.some((e) => typeOf(e) === "stream_reset")).toBe(false);
    // Same ids in the same order, same data: no gap, no duplicate.
    expect(view(got)).toEqual(view(reference));
    expect(new Set(got.map((e) => e.id)).size).toBe(got.length);
  });

  it("?after=0 replays everything retained", async () => {
    expect(reference, "depends on the previous test").toBeDefined();
    const all = await open(eventsUrl(stack.url, projectId, sid, "0"));
    const replay = await collectUntil(all, endsRun(run.runId), 30_000);
    // This session's stream holds exactly the one run, from its run_queued on.
    expect(view(replay)).toEqual(view(reference));
    const state = await api(stack.url).get<{ lastOffset: string; status: string }>(
      `/v1/projects/${projectId}/sessions/${sid}/state`,
    );
    expect(state.json).toMatchObject({ status: "idle", lastOffset: reference.at(-1)!.id });
  });

  it("a cursor ahead of the stream yields stream_reset 'lost', then the retained events", async () => {
    expect(reference, "depends on the first test").toBeDefined();
    const bogus = "99999999999999-0";
    for (const conn of [
      await open(eventsUrl(stack.url, projectId, sid, bogus)),
      await open(eventsUrl(stack.url, projectId, sid), bogus),
    ]) {
      const first = await conn.next(10_000);
      expect(first.id).toBeUndefined();
      expect(wire(first)).toMatchObject({
        type: "stream_reset",
        reason: "lost",
        firstOffset: reference[0]!.id,
      });
      const rest = await collectUntil(conn, endsRun(run.runId), 30_000);
      expect(view(rest.slice(1))).toEqual(view(reference));
      conn.close();
    }
  });

  it("a cursor behind retention yields stream_reset 'trimmed', then the retained events", async () => {
    const project = await createProject(small.url, "Trimmed");
    const session = await createSession(small.url, project);
    const p = await prompt(small.url, project, session, "[[deltas:400]]");
    const record = await waitForRunEnd(small.url, project, session, p.runId);
    expect(record.status).toBe("finished");

    // Everything retained: ?after=0 replays it without a reset.
    const all = await open(eventsUrl(small.url, project, session, "0"));
    const retainedAll = await collectUntil(all, endsRun(p.runId), 30_000);
    expect(retainedAll.some((e) => typeOf(e) === "stream_reset")).toBe(false);

    // From the prompt's offset (?after=) and from run_queued's own id (Last-Event-ID).
    for (const conn of [
      await open(eventsUrl(small.url, project, session, p.offset)),
      await open(eventsUrl(small.url, project, session), record.queuedOffset),
    ]) {
      const events = await collectUntil(conn, endsRun(p.runId), 30_000);
      const [reset, ...retained] = events;
      expect(reset!.id).toBeUndefined();
      expect(wire(reset!)).toMatchObject({ type: "stream_reset", reason: "trimmed" });
      expect(wire(reset!).firstOffset).toBe(retained[0]!.id);
      // The beginning of the run is gone; what is left is contiguous up to run_finished.
      expect(retained.some(isEvent("run_queued", p.runId))).toBe(false);
      expect(retained.some(isEvent("run_started", p.runId))).toBe(false);
      expect(retained.length).toBeGreaterThanOrEqual(100);
      expect(retained.length).toBeLessThan(400);
      expect(view(retained)).toEqual(view(retainedAll));
      expect(retained.at(-1)!.id).toBe(record.endOffset);
      conn.close();
    }

    // A cursor at the first retained entry is fine: no reset, the rest follows.
    const fromFirst = await open(eventsUrl(small.url, project, session, retainedAll[0]!.id));
    const rest = await collectUntil(fromFirst, endsRun(p.runId), 30_000);
    expect(view(rest)).toEqual(view(retainedAll.slice(1)));
  });

  it("a cursor at the newest entry replays nothing and continues live", async () => {
    expect(reference, "depends on the first test").toBeDefined();
    const state = await api(stack.url).get<{ lastOffset: string }>(
      `/v1/projects/${projectId}/sessions/${sid}/state`,
    );
    const live = await open(eventsUrl(stack.url, projectId, sid), state.json.lastOffset);
    const tail = await open(eventsUrl(stack.url, projectId, sid));
    const next = await prompt(stack.url, projectId, sid, "[[reply:after the tail]]");
    const first = await live.next(10_000);
    expect(wire(first)).toMatchObject({ type: "run_queued", runId: next.runId });
    const fromLive = await collectUntil(live, endsRun(next.runId), 30_000);
    // A client with neither header nor ?after= (live only) sees the same new events. (It may miss
    // the very first one: the 200 is sent before its subscription is in place.)
    const fromTail = await collectUntil(tail, endsRun(next.runId), 30_000);
    expect(fromTail.length).toBeGreaterThanOrEqual(fromLive.length - 1);
    expect(view(fromTail)).toEqual(view(fromLive.slice(fromLive.length - fromTail.length)));
    expect(wire(fromLive.at(-1)!)).toMatchObject({ type: "run_finished", runId: next.runId });
  });
});
