// Failover of a project's owner, with the default lease TTL (3 s):
// - SIGKILL mid-run: another worker holds the lease (higher epoch) within TTL + 2 s; the run is
//   reported `run_interrupted` exactly once (state `interrupted`); a run queued behind it in the
//   same session then runs to `run_finished`, in order, on the new owner.
// - SIGKILL with a deep session queue (more queued runs than PI_FLEET_PROJECT_MAX_RUNS): every
//   queued run still runs, in order, on the new owner.
// - SIGSTOP mid-run past the TTL (fencing): after the takeover the paused ex-owner, once
//   continued, writes nothing more into the stream and aborts its model request.

import { randomBytes } from "node:crypto";
import { type FakeLlm, openSse, type SseConnection, startFakeLlm } from "@pi-fleet/testkit";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createProject,
  createSession,
  eventsUrl,
  getRun,
  prompt,
  registerFake,
  waitRunEnd,
} from "./support/api.ts";
import { indexOf, poll, printFigures, ranTokens, settleRuns, sleep, terminalsOf } from "./support/checks.ts";
import { type Cluster, type LeaseHolder, startCluster } from "./support/cluster.ts";
import { type Entry, replaySession } from "./support/follower.ts";
import { stopAllProcs } from "./support/procs.ts";

const TTL_MS = 3000; // the default PI_FLEET_LEASE_TTL_MS (not overridden here)

let fake: FakeLlm;
let c: Cluster;
const sockets: SseConnection[] = [];

beforeAll(async () => {
  fake = await startFakeLlm();
  c = await startCluster({ label: "failover" });
  await registerFake(c.gw(0).url, fake);
});

afterEach(async (ctx) => {
  for (const s of sockets.splice(0)) s.close();
  if (ctx.task.result?.state === "fail") console.log(await c.failureReport());
  // Every worker id runs again for the next test (a test may have killed or paused one).
  for (const [id, w] of c.workers) {
    w.signal("SIGCONT");
    if (!w.alive()) await c.startWorker(id);
  }
});

afterAll(async () => {
  await c?.close();
  await stopAllProcs(); // anything a failed start left behind
  await fake?.close();
});

/** Waits until the SSE connection saw `n` message_update events. */
async function midRun(sse: SseConnection, n: number): Promise<void> {
  let seen = 0;
  await sse.waitFor((e) => {
    if (e.data.includes('"type":"message_update"')) seen++;
    return seen >= n;
  }, 30_000);
}

/** Polls the lease until a different worker holds it with a higher epoch. */
async function awaitTakeover(project: string, before: LeaseHolder, timeoutMs: number): Promise<LeaseHolder> {
  return poll(
    `a new owner of ${project}`,
    async () => {
      const l = await c.leaseOf(project);
      return l && l.workerId !== before.workerId && l.epoch > before.epoch ? l : undefined;
    },
    timeoutMs,
    20,
  );
}

describe("owner failover", () => {
  it("SIGKILL mid-run: takeover within TTL + 2 s, one run_interrupted, the queued run finishes after it", async () => {
    const [gA, gB] = [c.gw(0).url, c.gw(1).url];
    const project = await createProject(gA, "kill-timing");
    const session = await createSession(gA, project);
    const long = await prompt(gA, project, session, "[[delay:20]] [[deltas:300]] [[tag:kill-long]]");
    const sse = await openSse(eventsUrl(gB, project, session, long.offset));
    sockets.push(sse);
    const token = `after-kill-${randomBytes(4).toString("hex")}`;
    const next = await prompt(gB, project, session, `[[bash:echo ${token} >> ran.txt]]`);
    await midRun(sse, 20);

    const before = await c.leaseOf(project);
    expect(before, "the project has an owner while its run streams").toBeDefined();
    const victim = c.worker(before!.workerId);
    const killedAt = Date.now();
    victim.signal("SIGKILL");
    const after = await awaitTakeover(project, before!, 15_000);
    const failoverMs = Date.now() - killedAt;
    await victim.exit;

    const longRun = await waitRunEnd(gB, project, session, long.runId, 30_000);
    const nextRun = await waitRunEnd(gA, project, session, next.runId, 30_000);
    const entries = await replaySession(gA, project, session);
    const started = (runId: string) => entries.find((e) => e.type === "run_started" && e.runId === runId);

    printFigures("SIGKILL failover", {
      "lease TTL (ms)": TTL_MS,
      "owner before": before!.token,
      "owner after": after.token,
      "kill → new lease holder (ms)": failoverMs,
      "long run": `${longRun.status} (${longRun.reason ?? "-"})`,
      "queued run": nextRun.status,
    });

    expect(failoverMs, "another worker owns the project within TTL + 2 s").toBeLessThanOrEqual(TTL_MS + 2000);
    expect(longRun.status).toBe("interrupted");
    expect(terminalsOf(entries, long.runId).map((e) => e.type)).toEqual(["run_interrupted"]);
    expect(nextRun.status, nextRun.error).toBe("finished");
    expect(terminalsOf(entries, next.runId).map((e) => e.type)).toEqual(["run_finished"]);
    // In order: the queued run starts only after the interrupted one ended, on the new owner.
    expect(indexOf(entries, "run_started", next.runId)).toBeGreaterThan(
      indexOf(entries, "run_interrupted", long.runId),
    );
    expect(started(next.runId)?.event).toMatchObject({ workerId: after.workerId, epoch: after.epoch });
    expect((await ranTokens(c, project)).get(token)).toBe(1);
    // The SSE client that stayed connected saw the same stream.
    await sse.waitFor((e) => e.id === entries.at(-1)?.id, 10_000);
  });

  it("SIGKILL with 8 runs queued behind the running one: all of them run, in order", async () => {
    const [gA, gB] = [c.gw(0).url, c.gw(1).url];
    const project = await createProject(gA, "kill-deep-queue");
    const session = await createSession(gA, project);
    const long = await prompt(gA, project, session, "[[delay:20]] [[deltas:300]] [[tag:deep-long]]");
    const sse = await openSse(eventsUrl(gB, project, session, long.offset));
    sockets.push(sse);
    const queued: { runId: string; token: string }[] = [];
    for (let i = 0; i < 8; i++) {
      const token = `deep-${i}-${randomBytes(4).toString("hex")}`;
      const answer = await prompt(
        i % 2 === 0 ? gA : gB,
        project,
        session,
        `[[bash:echo ${token} >> ran.txt]]`,
      );
      queued.push({ runId: answer.runId, token });
    }
    await midRun(sse, 20);
    const before = await c.leaseOf(project);
    expect(before).toBeDefined();
    const victim = c.worker(before!.workerId);
    const killedAt = Date.now();
    victim.signal("SIGKILL");
    const after = await awaitTakeover(project, before!, 15_000);
    const takeoverMs = Date.now() - killedAt;
    await victim.exit;

    const runs = [
      { project, session, runId: long.runId },
      ...queued.map((q) => ({ project, session, runId: q.runId })),
    ];
    const settled = await settleRuns([gA, gB], runs, 15_000);
    const states = runs.map((r) => settled.get(r.runId)?.status ?? "?");
    const entries = await replaySession(gA, project, session);
    const startOrder = entries.filter((e) => e.type === "run_started").map((e) => e.runId);
    const tokens = await ranTokens(c, project);
    const stuck = runs.filter(
      (r) => !["finished", "interrupted"].includes(settled.get(r.runId)?.status ?? ""),
    );
    const diagnosis =
      stuck.length > 0
        ? await c.diagnose(
            project,
            stuck.map((r) => r.runId),
          )
        : "";
    printFigures("SIGKILL with a deep session queue", {
      "owner before / after": `${before!.token} / ${after.token}`,
      "kill → new lease holder (ms)": takeoverMs,
      "states (running run first, then queued in order)": states.join(" "),
      "runs started after the kill": startOrder.length - 1,
    });
    if (diagnosis) console.log(`STUCK RUNS:\n${diagnosis}`);

    expect(settled.get(long.runId)?.status).toBe("interrupted");
    expect(
      stuck.map((r) => `${r.runId}: ${settled.get(r.runId)?.status}`),
      "queued runs that never ran after the failover",
    ).toEqual([]);
    for (const q of queued) {
      expect(settled.get(q.runId)?.status).toBe("finished");
      expect(tokens.get(q.token)).toBe(1);
      expect(terminalsOf(entries, q.runId).map((e) => e.type)).toEqual(["run_finished"]);
    }
    expect(startOrder).toEqual([long.runId, ...queued.map((q) => q.runId)]);
  });

  it("SIGSTOP past the TTL: the paused ex-owner writes nothing after the takeover and aborts its run", async () => {
    const [gA, gB] = [c.gw(0).url, c.gw(1).url];
    const project = await createProject(gA, "fencing");
    const session = await createSession(gA, project);
    const tag = `fence-${randomBytes(4).toString("hex")}`;
    const long = await prompt(gA, project, session, `[[delay:20]] [[deltas:400]] [[tag:${tag}]]`);
    const sse = await openSse(eventsUrl(gB, project, session, long.offset));
    sockets.push(sse);
    await midRun(sse, 20);

    const before = await c.leaseOf(project);
    expect(before).toBeDefined();
    const paused = c.worker(before!.workerId);
    const disconnectsBefore = fake.disconnects;
    const stoppedAt = Date.now();
    paused.signal("SIGSTOP");
    // The dead-looking owner's dispatch job stalls and is re-delivered: no new prompt needed.
    const after = await awaitTakeover(project, before!, 20_000);
    const takeoverMs = Date.now() - stoppedAt;
    const interrupted = await waitRunEnd(gB, project, session, long.runId, 15_000);
    expect(interrupted.status).toBe("interrupted");
    const atTakeover = await replaySession(gA, project, session);

    // Wake the ex-owner: it must notice the lost lease, abort the model request, write nothing.
    const continuedAt = Date.now();
    paused.signal("SIGCONT");
    await poll(
      "the ex-owner to abort its model request",
      async () => (fake.disconnects > disconnectsBefore ? true : undefined),
      15_000,
    );
    const abortMs = Date.now() - continuedAt;
    await sleep(1500); // room for any late write
    const afterContinue = await replaySession(gA, project, session);

    // A new run in the same session runs on the new owner, and nothing of the old one shows up.
    const token = `after-fence-${randomBytes(4).toString("hex")}`;
    const next = await prompt(gB, project, session, `[[bash:echo ${token} >> ran.txt]]`);
    const nextRun = await waitRunEnd(gA, project, session, next.runId, 30_000);
    const final = await replaySession(gB, project, session);
    const stillAlive = paused.alive();
    const oldLogs = paused.logs();

    printFigures("SIGSTOP fencing", {
      "owner before": before!.token,
      "owner after": after.token,
      "SIGSTOP → new lease holder (ms)": takeoverMs,
      "SIGCONT → model request aborted (ms)": abortMs,
      "fake LLM disconnects": fake.disconnects - disconnectsBefore,
      "entries at takeover / after SIGCONT": `${atTakeover.length} / ${afterContinue.length}`,
      "ex-owner alive": stillAlive,
    });

    const ids = (es: Entry[]) => es.map((e) => `${e.id} ${e.type}`);
    // The run was interrupted exactly once, by the new owner, and the stream ends there.
    expect(terminalsOf(atTakeover, long.runId).map((e) => e.type)).toEqual(["run_interrupted"]);
    expect(atTakeover.at(-1)?.type).toBe("run_interrupted");
    // Not one entry was written by the ex-owner after it was continued.
    expect(ids(afterContinue)).toEqual(ids(atTakeover));
    // Nothing but the interruption was written between the pause and the takeover either.
    const lateOld = atTakeover.filter((e) => Number(e.id.split("-")[0]) > stoppedAt + 250);
    expect(lateOld.map((e) => e.type)).toEqual(["run_interrupted"]);
    expect(lateOld[0]?.event).toMatchObject({ reason: expect.any(String) });
    // The next run: the new owner's run_started, then only its own bracket.
    expect(nextRun.status, nextRun.error).toBe("finished");
    const tail = final.slice(atTakeover.length);
    expect(tail[0]).toMatchObject({ type: "run_queued", runId: next.runId });
    expect(tail[1]).toMatchObject({ type: "run_started", runId: next.runId });
    expect(tail[1]?.event).toMatchObject({ workerId: after.workerId, epoch: after.epoch });
    expect(tail.at(-1)).toMatchObject({ type: "run_finished", runId: next.runId });
    expect(tail.filter((e) => e.runId === long.runId)).toEqual([]);
    expect((await ranTokens(c, project)).get(token)).toBe(1);
    expect((await getRun(gA, project, session, long.runId)).json.status).toBe("interrupted");
    // The ex-owner noticed (fenced write or lost lease) and kept running.
    expect(oldLogs).toMatch(/lease lost|fenced/);
    expect(stillAlive).toBe(true);
  });
});
