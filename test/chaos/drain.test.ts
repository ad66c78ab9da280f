// SIGTERM under load: a worker that owns projects with running and queued runs drains. Its
// /readyz answers 503 at once; running runs finish within PI_FLEET_DRAIN_TIMEOUT_MS (1500 ms
// here) or end `run_interrupted {reason: "shutdown"}`; it exits 0; its queued runs continue on
// another worker shortly after it exits.

import { randomBytes } from "node:crypto";
import { type FakeLlm, openSse, type SseConnection, startFakeLlm } from "@pi-fleet/testkit";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  call,
  createProject,
  createSession,
  eventsUrl,
  type PromptAnswer,
  prompt,
  type RunView,
  registerFake,
  TERMINAL_STATES,
  waitRunEnd,
} from "./support/api.ts";
import { poll, printFigures, ranTokens, settleRuns, terminalsOf } from "./support/checks.ts";
import { type Cluster, startCluster } from "./support/cluster.ts";
import { offsetMs, replaySession } from "./support/follower.ts";
import { stopAllProcs } from "./support/procs.ts";

const DRAIN_MS = 1500;

let fake: FakeLlm;
let c: Cluster;
const sockets: SseConnection[] = [];

beforeAll(async () => {
  fake = await startFakeLlm();
  // Only w1 at first, so that it owns every project of the test.
  c = await startCluster({
    label: "drain",
    workers: ["w1"],
    workerEnv: { PI_FLEET_DRAIN_TIMEOUT_MS: String(DRAIN_MS) },
  });
  await registerFake(c.gw(0).url, fake);
});

afterEach(async (ctx) => {
  for (const s of sockets.splice(0)) s.close();
  if (ctx.task.result?.state === "fail") console.log(await c.failureReport());
});

afterAll(async () => {
  await c?.close();
  await stopAllProcs(); // anything a failed start left behind
  await fake?.close();
});

interface Lane {
  project: string;
  session: string;
  /** Running when SIGTERM arrives. */
  running: PromptAnswer;
  /** "short" ends within the drain timeout, "long" does not. */
  kind: "short" | "long";
  /** Queued behind `running` in the same session. */
  queued: PromptAnswer;
  token: string;
}

describe("drain", () => {
  it("SIGTERM: readyz 503 at once, runs finish or are interrupted (shutdown), exit 0, queued runs move on", async () => {
    const [gA, gB] = [c.gw(0).url, c.gw(1).url];
    const projects: string[] = [];
    for (let i = 1; i <= 4; i++) projects.push(await createProject(gA, `drain-${i}`));
    // Warm-up: w1 takes every project (sticky: it keeps them while it lives).
    for (const p of projects) {
      const s = await createSession(gA, p);
      const warm = await prompt(gA, p, s, "[[reply:warm]]");
      expect((await waitRunEnd(gA, p, s, warm.runId)).status).toBe("finished");
    }
    for (const p of projects) expect((await c.leaseOf(p))?.workerId).toBe("w1");
    await Promise.all([c.startWorker("w2"), c.startWorker("w3")]);

    const lanes: Lane[] = [];
    for (const project of projects) {
      for (const kind of ["short", "long"] as const) {
        const session = await createSession(gA, project);
        const text =
          kind === "short"
            ? "[[delay:20]] [[deltas:25]] [[tag:short]]"
            : "[[delay:25]] [[deltas:400]] [[tag:long]]";
        const running = await prompt(gA, project, session, text);
        const token = `drain-${randomBytes(4).toString("hex")}`;
        const queued = await prompt(gB, project, session, `[[bash:echo ${token} >> ran.txt]]`);
        lanes.push({ project, session, running, kind, queued, token });
      }
    }
    // Every lane's first run streams on w1.
    for (const lane of lanes) {
      const sse = await openSse(eventsUrl(gB, lane.project, lane.session, lane.running.offset));
      sockets.push(sse);
      await sse.waitFor((e) => e.data.includes('"type":"message_update"'), 20_000);
    }
    for (const p of projects) expect((await c.leaseOf(p))?.workerId).toBe("w1");

    const w1 = c.worker("w1");
    const termAt = Date.now();
    w1.signal("SIGTERM");
    const ready = await poll(
      "w1 /readyz to answer 503",
      async () => {
        const r = await call(w1.healthUrl, "GET", "/readyz", undefined, 2000);
        return r.status === 503 ? r : undefined;
      },
      2000,
      10,
    );
    const notReadyMs = Date.now() - termAt;
    const exit = await w1.exit;
    const exitMs = exit.at - termAt;

    // Every run ends (bounded); stuck ones are diagnosed and reported.
    const tracked = lanes.flatMap((l) => [
      { project: l.project, session: l.session, runId: l.running.runId },
      { project: l.project, session: l.session, runId: l.queued.runId },
    ]);
    const settled = await settleRuns([gA, gB], tracked, 10_000);
    const unknown: RunView = { id: "?", sessionId: "?", status: "?", seq: 0 };
    const stuck = tracked.filter((t) => !TERMINAL_STATES.has(settled.get(t.runId)?.status ?? ""));
    const results: { lane: Lane; running: RunView; queued: RunView; queuedStartMs: number; owner: string }[] =
      [];
    const terminalCounts: number[] = [];
    for (const lane of lanes) {
      const entries = await replaySession(gA, lane.project, lane.session);
      terminalCounts.push(
        terminalsOf(entries, lane.running.runId).length,
        terminalsOf(entries, lane.queued.runId).length,
      );
      const started = entries.find((e) => e.type === "run_started" && e.runId === lane.queued.runId);
      results.push({
        lane,
        running: settled.get(lane.running.runId) ?? unknown,
        queued: settled.get(lane.queued.runId) ?? unknown,
        queuedStartMs: started ? offsetMs(started.id) - exit.at : Number.NaN,
        owner: String(started?.event.workerId ?? "-"),
      });
    }
    const starts = results.map((r) => r.queuedStartMs);
    printFigures("drain (SIGTERM)", {
      "drain timeout (ms)": DRAIN_MS,
      "SIGTERM → /readyz 503 (ms)": notReadyMs,
      "/readyz body": ready.json,
      "SIGTERM → exit (ms)": exitMs,
      "exit code / signal": `${exit.code} / ${exit.signal}`,
      "running runs": results
        .map((r) => `${r.lane.kind}:${r.running.status}(${r.running.reason ?? "-"})`)
        .join(" "),
      "queued runs": results.map((r) => `${r.queued.status}@${r.owner}`).join(" "),
      "exit → queued run_started (ms), per run": starts.join(", "),
      "exit → queued run_started max (ms)": Math.max(...starts),
      "stuck runs": stuck.length,
    });
    if (stuck.length > 0) {
      const report = await Promise.all(
        [...new Set(stuck.map((t) => t.project))].map((p) =>
          c.diagnose(
            p,
            stuck.filter((t) => t.project === p).map((t) => t.runId),
          ),
        ),
      );
      console.log(`STUCK RUNS after the drain:\n${report.join("\n")}`);
    }

    expect(
      stuck.map((t) => `${t.project}/${t.runId}: ${settled.get(t.runId)?.status}`),
      "runs that never ended after the drain",
    ).toEqual([]);
    expect(
      terminalCounts.every((n) => n === 1),
      "exactly one terminal event per run",
    ).toBe(true);

    expect(notReadyMs).toBeLessThan(1000);
    expect(ready.json).toMatchObject({ ok: false, draining: true });
    expect(exit.code).toBe(0);
    expect(exit.signal).toBeNull();
    expect(exitMs).toBeLessThan(DRAIN_MS + 5000);
    for (const r of results) {
      if (r.lane.kind === "short") expect(r.running.status).toBe("finished");
      else expect(r.running).toMatchObject({ status: "interrupted", reason: "shutdown" });
      expect(r.queued.status, r.queued.error).toBe("finished");
      expect(["w2", "w3"]).toContain(r.owner);
      expect((await ranTokens(c, r.lane.project)).get(r.lane.token)).toBe(1);
    }
    // Queued runs continue on another worker within ~1 s of the exit.
    expect(Math.max(...starts)).toBeLessThanOrEqual(1500);
  });
});
