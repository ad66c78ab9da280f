// Two stateless gateways in front of one worker, as separate real processes sharing one Redis,
// key prefix and workspace (test/e2e/streaming-support/fleet.ts):
// (a) a client follows a long run on gateway A over SSE, moves mid-stream to gateway B
//     (Last-Event-ID), then back to A over WebSocket (`after`): what it got equals the full
//     `?after=0` replay — nothing missed, nothing twice;
// (b) 100 clients (half SSE, half WS) follow several sessions' long runs through gateway A;
//     A is SIGKILLed mid-stream; every client reconnects to B with its last offset; once the
//     runs end, every client's events equal the full replay: 0 gaps, 0 duplicates.

import { type FakeLlm, startFakeLlm, uniquePrefix } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from "vitest";
import {
  createProject,
  createSession,
  type PromptResult,
  prompt,
  registerFakeProvider,
  waitForRunEnd,
} from "../support/http.ts";
import {
  compareWithReplay,
  entriesDiff,
  Follower,
  percentile,
  replaySession,
} from "./streaming-support/clients.ts";
import { type Fleet, startFleet, stopAllFleets } from "./streaming-support/fleet.ts";

let llm: FakeLlm;
let fleet: Fleet;
const followers: Follower[] = [];

const LONG_RUN = "[[delay:10]] [[deltas:400]]";

beforeAll(async () => {
  llm = await startFakeLlm();
  fleet = await startFleet({ redisUrl: inject("redisUrl"), prefix: uniquePrefix("e2e-mgw"), gateways: 2 });
  await registerFakeProvider(fleet.gw(0).url, llm);
});

afterAll(async () => {
  await Promise.all(followers.map((f) => f.close().catch(() => undefined)));
  await stopAllFleets();
  await llm?.close();
});

function follower(kind: "sse" | "ws", project: string, session: string): Follower {
  const f = new Follower(kind, project, session);
  followers.push(f);
  return f;
}

describe("a client moving between gateways", () => {
  it("SSE on A → SSE on B (Last-Event-ID) → WS on A (after) equals the full replay", async () => {
    onTestFailed(() => console.log(fleet.logTails()));
    const a = fleet.gw(0).url;
    const b = fleet.gw(1).url;
    const project = await createProject(a, "Move");
    const session = await createSession(a, project);
    const run: PromptResult = await prompt(a, project, session, LONG_RUN);

    const sse = follower("sse", project, session);
    await sse.connect(a, { after: run.offset });
    await sse.until(() => sse.received.length >= 80, 30_000, "80 entries on A");
    await sse.close();
    const firstLeg = sse.received.length;
    expect(sse.hasRunEnd(run.runId), "moved before the run ended").toBe(false);

    await sse.connect(b, { after: sse.lastId, viaHeader: true });
    await sse.until(() => sse.received.length >= firstLeg + 80, 30_000, "80 more entries on B");
    await sse.close();
    expect(sse.hasRunEnd(run.runId), "moved back before the run ended").toBe(false);

    const ws = follower("ws", project, session);
    await ws.connect(a, { after: sse.lastId });
    await ws.until(() => ws.hasRunEnd(run.runId), 60_000, "the run's end on A over WS");
    await ws.close();

    await waitForRunEnd(a, project, session, run.runId);
    const { entries: replay } = await replaySession(b, project, session);
    const got = [...sse.received, ...ws.received].map((r) => ({ id: r.id, data: r.data }));
    console.log(
      `[multi-gateway] move: ${got.length} events (${firstLeg} over SSE on A, ` +
        `${sse.received.length - firstLeg} over SSE on B, ${ws.received.length} over WS on A), ` +
        `replay ${replay.length}`,
    );
    expect(sse.idless, "no stream_reset / stream_lagging").toEqual([]);
    expect(ws.idless, "no stream_reset / stream_lagging").toEqual([]);
    expect(sse.violations).toEqual([]);
    expect(ws.violations).toEqual([]);
    expect(ws.received.length, "the WS leg streamed live events").toBeGreaterThan(50);
    expect(entriesDiff(got, replay), "the client's events vs the ?after=0 replay").toBeUndefined();
  });
});

describe("a gateway killed under 100 streaming clients", () => {
  it("every client resumes on the other gateway with 0 gaps and 0 duplicates", async () => {
    onTestFailed(() => console.log(fleet.logTails()));
    const a = fleet.gw(0);
    const b = fleet.gw(1).url;
    const project = await createProject(a.url, "Kill");
    const sessions = await Promise.all(Array.from({ length: 4 }, () => createSession(a.url, project)));
    const runs = await Promise.all(sessions.map((s) => prompt(a.url, project, s, LONG_RUN)));

    // 100 clients through gateway A, alternating SSE and WS, spread over the sessions.
    const clients = Array.from({ length: 100 }, (_, i) => {
      const k = i % sessions.length;
      return {
        f: follower(i % 2 === 0 ? "sse" : "ws", project, sessions[k] ?? ""),
        run: runs[k] as PromptResult,
      };
    });
    await Promise.all(clients.map(({ f, run }) => f.connect(a.url, { after: run.offset })));
    await Promise.all(
      clients.map(({ f }) => f.until(() => f.received.length >= 40, 30_000, "40 entries on A")),
    );
    expect(
      clients.filter(({ f, run }) => f.hasRunEnd(run.runId)),
      "every run still streaming when A dies",
    ).toEqual([]);

    // SIGKILL A; every client reconnects to B from its last offset as soon as it notices.
    const killedAt = Date.now();
    const droppedMs: number[] = [];
    const reconnectMs: number[] = [];
    const firstEventMs: number[] = [];
    const resumed = clients.map(async ({ f }) => {
      await f.ended;
      droppedMs.push(Date.now() - killedAt);
      const before = f.received.length;
      await f.connect(b, f.kind === "sse" ? { after: f.lastId, viaHeader: true } : { after: f.lastId });
      reconnectMs.push(Date.now() - killedAt);
      await f.until(() => f.received.length > before, 30_000, "a first event on B");
      firstEventMs.push((f.received[before]?.at ?? Number.NaN) - killedAt);
    });
    await a.kill();
    await Promise.all(resumed);
    await Promise.all(
      clients.map(({ f, run }) => f.until(() => f.hasRunEnd(run.runId), 60_000, "the run's end")),
    );
    await Promise.all(runs.map((r, k) => waitForRunEnd(b, project, sessions[k] ?? "", r.runId)));

    const replays = (await Promise.all(sessions.map((s) => replaySession(b, project, s)))).map(
      (r) => r.entries,
    );
    let gaps = 0;
    let duplicates = 0;
    let mismatches = 0;
    const unequal: string[] = [];
    for (const { f } of clients) {
      const c = compareWithReplay(f, replays[sessions.indexOf(f.session)] ?? []);
      gaps += c.gaps;
      duplicates += c.duplicates;
      mismatches += c.mismatches;
      if (!c.equal || f.idless.length > 0) {
        unequal.push(`${f.kind} ${f.session}: ${JSON.stringify(c)}, id-less frames ${f.idless.length}`);
      }
    }
    const counts = clients.map(({ f }) => f.received.length);
    const onB = clients.map(({ f }) => f.received.filter((r) => r.conn === 2).length);
    console.log(
      `[multi-gateway] kill: ${clients.length} clients (${clients.filter((c) => c.f.kind === "sse").length} SSE, ` +
        `${clients.filter((c) => c.f.kind === "ws").length} WS) on ${sessions.length} sessions; ` +
        `events per client min ${Math.min(...counts)} / median ${percentile(counts, 50)} / max ${Math.max(...counts)} ` +
        `(${percentile(onB, 50)} median after the move); ` +
        `drop noticed after kill: p50 ${percentile(droppedMs, 50)} / max ${Math.max(...droppedMs)} ms; ` +
        `reconnected to B after kill: min ${Math.min(...reconnectMs)} / p50 ${percentile(reconnectMs, 50)} / ` +
        `max ${Math.max(...reconnectMs)} ms; first event on B: p50 ${percentile(firstEventMs, 50)} / ` +
        `max ${Math.max(...firstEventMs)} ms; gaps ${gaps}, duplicates ${duplicates}, mismatches ${mismatches}`,
    );
    expect(clients.every(({ f }) => f.connections === 2)).toBe(true);
    expect(Math.min(...onB), "every client streamed live on B").toBeGreaterThan(0);
    expect({ gaps, duplicates, mismatches }).toEqual({ gaps: 0, duplicates: 0, mismatches: 0 });
    expect(unequal).toEqual([]);
  });
});
