// The chaos run: 2 gateways, 3 workers, one Redis (AOF). ≥ 200 runs over 12 projects (2 sessions
// each) while a random worker is SIGKILLed every few seconds and restarted (same id or a new
// one). Every run is `[[bash:echo <unique token> >> ran.txt]]` (plus maybe a small delay), so a
// duplicated tool execution shows as a token written twice. A follower per session keeps
// disconnecting and resuming (Last-Event-ID, alternating gateways) and is compared with a final
// `?after=0` replay. Everything random comes from one fixed seed.

import { randomBytes } from "node:crypto";
import { type FakeLlm, startFakeLlm } from "@pi-fleet/testkit";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  call,
  createProject,
  createSession,
  type PromptAnswer,
  registerFake,
  sessionPath,
  TERMINAL_EVENTS,
  TERMINAL_STATES,
} from "./support/api.ts";
import { percentile, printFigures, ranTokens, settleRuns, sleep } from "./support/checks.ts";
import { type Cluster, startCluster } from "./support/cluster.ts";
import { type Entry, offsetMs, replaySession, SessionFollower } from "./support/follower.ts";
import { seededRng } from "./support/prng.ts";
import { stopAllProcs } from "./support/procs.ts";

const SEED = 0x0c4a05;
const TTL_MS = 2000;
const PROJECTS = 12;
const SESSIONS_PER_PROJECT = 2;
const RUNS_PER_SESSION = 9; // 12 × 2 × 9 = 216 runs
const MAX_KILLS = 10;
const KILL_GAP_MS: [number, number] = [1500, 3500]; // + the replacement's boot time (~2 s)
const CHAOS_BUDGET_MS = 60_000; // no kill starts after this
const SETTLE_MS = 30_000;

let fake: FakeLlm;
let c: Cluster;
const followers: SessionFollower[] = [];

beforeAll(async () => {
  fake = await startFakeLlm();
  c = await startCluster({ label: "chaos", workerEnv: { PI_FLEET_LEASE_TTL_MS: String(TTL_MS) } });
  await registerFake(c.gw(0).url, fake);
});

afterEach(async (ctx) => {
  await Promise.all(followers.splice(0).map((f) => f.stop()));
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
}

interface PlannedRun {
  lane: Lane;
  token: string;
  text: string;
  gateway: number;
  pauseMs: number;
}

interface SentRun extends PlannedRun {
  answer: PromptAnswer;
}

interface Kill {
  at: number;
  worker: string;
  replacement: string;
  /** Projects whose lease the victim held when it was killed. */
  owned: string[];
}

describe("chaos", () => {
  it("≥ 200 runs while random workers are SIGKILLed and restarted", async () => {
    const startedAt = Date.now();
    const rng = seededRng(SEED);
    const gateways = (): string[] => c.gateways.map((g) => g.url);

    const lanes: Lane[] = [];
    const projects: string[] = [];
    for (let p = 1; p <= PROJECTS; p++) {
      const project = await createProject(c.gw(p).url, `chaos-${String(p).padStart(2, "0")}`);
      projects.push(project);
      for (let s = 0; s < SESSIONS_PER_PROJECT; s++) {
        lanes.push({ project, session: await createSession(c.gw(s).url, project) });
      }
    }

    // The whole plan comes from the seed before anything runs (timing cannot reorder draws).
    const salt = randomBytes(3).toString("hex"); // tokens unique per execution, plan identical
    const plan = new Map<Lane, PlannedRun[]>();
    let n = 0;
    for (const lane of lanes) {
      const runs: PlannedRun[] = [];
      for (let i = 0; i < RUNS_PER_SESSION; i++) {
        const token = `tok-${salt}-${String(n++).padStart(3, "0")}`;
        const delay = rng.pick([0, 10, 25, 40, 60]);
        runs.push({
          lane,
          token,
          text: `[[bash:echo ${token} >> ran.txt]]${delay > 0 ? ` [[delay:${delay}]]` : ""}`,
          gateway: rng.int(0, 1),
          pauseMs: rng.int(400, 4200),
        });
      }
      plan.set(lane, runs);
    }
    const killPlan = Array.from({ length: MAX_KILLS }, () => ({
      waitMs: rng.int(...KILL_GAP_MS),
      pick: rng.int(0, 2),
      reuseId: rng.chance(0.5),
    }));

    for (const [i, lane] of lanes.entries()) {
      const f = new SessionFollower({
        gateways,
        ...lane,
        rng: seededRng(SEED + 1000 + i),
        holdMs: [300, 2500],
      });
      followers.push(f);
      f.start();
    }

    // Submitters: one per session, each prompt acknowledged (200) before the next.
    const sent: SentRun[] = [];
    const promptErrors: string[] = [];
    let submitting = true;
    const submitters = lanes.map(async (lane) => {
      for (const run of plan.get(lane) ?? []) {
        await sleep(run.pauseMs);
        const res = await call<PromptAnswer>(
          gateways()[run.gateway] ?? "",
          "POST",
          `${sessionPath(lane.project, lane.session)}/prompt`,
          { text: run.text },
        );
        if (res.status === 200) sent.push({ ...run, answer: res.json });
        else promptErrors.push(`${res.status} ${res.text.slice(0, 200)}`);
      }
    });
    const submitted = Promise.all(submitters).finally(() => {
      submitting = false;
    });

    // Killer: SIGKILL a random worker, restart it (same id or a new one), repeat.
    const kills: Kill[] = [];
    let nextWorker = 4;
    const killer = (async () => {
      for (const k of killPlan) {
        await sleep(k.waitMs);
        if (Date.now() - startedAt > CHAOS_BUDGET_MS) break;
        if (!submitting && sent.length > 0) {
          // Load is over: stop once nothing is open any more.
          const open = await settleRuns(
            gateways(),
            sent.map((r) => ({ ...r.lane, runId: r.answer.runId })),
            1,
          );
          if ([...open.values()].every((v) => TERMINAL_STATES.has(v.status))) break;
        }
        const ids = [...c.workers.values()]
          .filter((w) => w.alive())
          .map((w) => w.id)
          .sort();
        const victimId = ids[k.pick % ids.length];
        if (victimId === undefined) break;
        const owned: string[] = [];
        for (const p of projects) if ((await c.leaseOf(p))?.workerId === victimId) owned.push(p);
        const victim = c.worker(victimId);
        const at = Date.now();
        victim.signal("SIGKILL");
        await victim.exit;
        const replacement = k.reuseId ? victimId : `w${nextWorker++}`;
        if (replacement !== victimId) c.workers.delete(victimId);
        kills.push({ at, worker: victimId, replacement, owned });
        await c.startWorker(replacement);
      }
    })();
    // Lease monitor: who owns what, sampled every 200 ms (for recovery figures and reports).
    const ownership: { at: number; project: string; token: string }[] = [];
    let monitoring = true;
    const monitor = (async () => {
      const last = new Map<string, string>();
      for (let i = 0; i < 2000 && monitoring; i++) {
        for (const p of projects) {
          const token = (await c.leaseOf(p).catch(() => undefined))?.token ?? "-";
          if (last.get(p) !== token) {
            last.set(p, token);
            ownership.push({ at: Date.now(), project: p, token });
          }
        }
        await sleep(200);
      }
    })();
    await Promise.all([submitted, killer]);

    // Everything ends.
    const runs = sent.map((r) => ({ ...r.lane, runId: r.answer.runId }));
    const settled = await settleRuns(gateways(), runs, SETTLE_MS);
    const stuck = sent.filter((r) => !TERMINAL_STATES.has(settled.get(r.answer.runId)?.status ?? ""));
    if (stuck.length > 0) {
      const ps = [...new Set(stuck.map((r) => r.lane.project))];
      const report = await Promise.all(
        ps.map((p) =>
          c.diagnose(
            p,
            stuck.filter((r) => r.lane.project === p).map((r) => r.answer.runId),
          ),
        ),
      );
      console.log(`STUCK RUNS:\n${report.join("\n")}`);
    }
    const stuckList = stuck.map(
      (r) => `${r.lane.project}/${r.answer.runId}: ${settled.get(r.answer.runId)?.status}`,
    );
    const ended = sent.filter((r) => !stuck.includes(r));
    await Promise.all(
      followers.map((f) =>
        f
          .waitTerminal(
            ended.filter((r) => r.lane.session === f.session).map((r) => r.answer.runId),
            20_000,
          )
          .catch(() => undefined),
      ),
    );
    await Promise.all(followers.map((f) => f.stop()));
    monitoring = false;
    await monitor;

    // Verification against the final replays.
    const problems: string[] = [];
    const byState: Record<string, number> = {};
    const reasons: Record<string, number> = {};
    const startedOf = new Map<string, Entry>();
    const projectStarts = new Map<string, number[]>(); // project → run_started times
    const queuedAt = new Map<string, number>();
    let gaps = 0;
    let dups = 0;
    let resets = 0;
    let entriesTotal = 0;
    const tokensByProject = new Map<string, Map<string, number>>();
    for (const p of projects) tokensByProject.set(p, await ranTokens(c, p));

    for (const f of followers) {
      const replay = await replaySession(gateways()[0] ?? "", f.project, f.session);
      entriesTotal += replay.length;
      const seen = new Set(f.entries.map((e) => `${e.id}\n${e.data}`));
      const missing = replay.filter((e) => !seen.has(`${e.id}\n${e.data}`));
      gaps += missing.length;
      dups += f.violations.length;
      resets += f.idless.length;
      if (f.entries.length !== replay.length || missing.length > 0) {
        problems.push(
          `follower ${f.session}: ${f.entries.length} entries vs ${replay.length} replayed, ${missing.length} missing`,
        );
      }
      for (const [i, e] of replay.entries()) {
        if (i > 0 && offsetMs(e.id) < offsetMs(replay[i - 1]?.id ?? "0-0"))
          problems.push(`replay not ordered at ${e.id}`);
        if (e.type === "run_started" && e.runId) {
          startedOf.set(e.runId, e);
          projectStarts.set(f.project, [...(projectStarts.get(f.project) ?? []), offsetMs(e.id)]);
        }
        if (e.type === "run_queued" && e.runId) queuedAt.set(e.runId, offsetMs(e.id));
      }
      const mine = ended.filter((r) => r.lane.session === f.session);
      const order = plan.get(lanes.find((l) => l.session === f.session) as Lane) ?? [];
      // Runs of a session start in prompt order.
      const startOrder = replay.filter((e) => e.type === "run_started").map((e) => e.runId);
      const promptOrder = order
        .map((p) => sent.find((r) => r.token === p.token)?.answer.runId)
        .filter((id): id is string => id !== undefined && startOrder.includes(id));
      if (startOrder.join() !== promptOrder.join())
        problems.push(`session ${f.session}: runs started out of order`);
      const tokens = tokensByProject.get(f.project) ?? new Map<string, number>();
      for (const r of mine) {
        const id = r.answer.runId;
        const status = settled.get(id)?.status ?? "?";
        byState[status] = (byState[status] ?? 0) + 1;
        const events = replay.filter((e) => e.runId === id);
        const terms = events.filter((e) => TERMINAL_EVENTS.has(e.type)).map((e) => e.type);
        const starts = events.filter((e) => e.type === "run_started").length;
        if (terms.length !== 1) problems.push(`${id}: ${terms.length} terminal events (${terms.join(",")})`);
        else if (terms[0] !== `run_${status}`)
          problems.push(`${id}: terminal ${terms[0]} but state ${status}`);
        if (starts > 1) problems.push(`${id}: started ${starts} times`);
        if (status !== "finished" && status !== "interrupted") problems.push(`${id}: ended ${status}`);
        if (status === "interrupted") {
          const reason = String(events.find((e) => e.type === "run_interrupted")?.event.reason ?? "?");
          reasons[reason] = (reasons[reason] ?? 0) + 1;
          if (starts === 0) problems.push(`${id}: interrupted but never started (it must run)`);
          const by = startedOf.get(id)?.event.workerId;
          const at = startedOf.get(id) ? offsetMs(startedOf.get(id)?.id ?? "0-0") : 0;
          if (!kills.some((k) => k.worker === by && k.at >= at - 50)) {
            problems.push(`${id}: interrupted (${reason}) on ${String(by)} without a kill of that worker`);
          }
        }
        const count = tokens.get(r.token) ?? 0;
        if (count > 1) problems.push(`${id}: tool ran ${count} times (token ${r.token})`);
        if (status === "finished" && count !== 1)
          problems.push(`${id}: finished but its tool ran ${count} times`);
      }
    }
    const unknownTokens = [...tokensByProject.values()].flatMap((m) =>
      [...m.keys()].filter((t) => !sent.some((r) => r.token === t)),
    );
    const duplicateTokens = [...tokensByProject.values()].flatMap((m) =>
      [...m.entries()].filter(([, k]) => k > 1).map(([t]) => t),
    );

    // Per kill and project the victim owned: kill → new lease holder (takeover), and kill → the
    // next run_started when that run was queued before the takeover (it had to wait for it).
    const takeovers: number[] = [];
    const recoveries: number[] = [];
    const slow: string[] = [];
    for (const k of kills) {
      for (const p of k.owned) {
        const leases = ownership.filter((o) => o.project === p);
        const victimToken = [...leases].reverse().find((o) => o.at <= k.at)?.token;
        const taken = leases.find((o) => o.at > k.at && o.token !== "-" && o.token !== victimToken);
        if (!taken) {
          problems.push(`project ${p}: nobody took it over after the kill of ${k.worker} at ${k.at}`);
          continue;
        }
        takeovers.push(taken.at - k.at);
        const firstStart = sent
          .map((r) => ({ r, s: startedOf.get(r.answer.runId) }))
          .filter((x) => x.r.lane.project === p && x.s !== undefined && offsetMs(x.s.id) > k.at)
          .sort((x, y) => offsetMs(x.s?.id ?? "0-0") - offsetMs(y.s?.id ?? "0-0"))[0];
        const startMs = firstStart?.s ? offsetMs(firstStart.s.id) : undefined;
        const queued = firstStart ? queuedAt.get(firstStart.r.answer.runId) : undefined;
        if (startMs !== undefined && queued !== undefined && queued < taken.at) {
          recoveries.push(startMs - k.at);
        }
        const worst = Math.max(
          taken.at - k.at,
          startMs !== undefined && queued !== undefined && queued < taken.at ? startMs - k.at : 0,
        );
        if (worst > TTL_MS + 5000) {
          const trail = leases
            .filter((o) => o.at >= k.at - 1000 && o.at <= k.at + worst + 1000)
            .map((o) => `+${o.at - k.at}ms ${o.token}`);
          slow.push(`${p} after killing ${k.worker}: ${worst} ms; leases ${trail.join(", ")}`);
        }
      }
    }

    printFigures("chaos: SIGKILL + restart", {
      seed: `0x${SEED.toString(16)}`,
      "lease TTL (ms)": TTL_MS,
      "projects / sessions": `${PROJECTS} / ${lanes.length}`,
      "runs acknowledged": sent.length,
      "prompt errors": promptErrors.length,
      "runs by terminal state": byState,
      "interrupt reasons": reasons,
      kills: kills.length,
      "kill sequence": kills.map((k) => `${k.worker}→${k.replacement}(${k.owned.length}p)`).join(" "),
      "kill → new lease holder (ms) p50/max": `${percentile(takeovers, 50)} / ${Math.max(0, ...takeovers)} (n=${takeovers.length})`,
      "kill → next run_started of an affected project (ms) p50/max": `${percentile(recoveries, 50)} / ${Math.max(0, ...recoveries)} (n=${recoveries.length})`,
      "slow recoveries (> TTL + 5 s)": slow,
      "stream entries": entriesTotal,
      "follower connections / failed connects": `${followers.reduce((a, f) => a + f.connections, 0)} / ${followers.reduce((a, f) => a + f.failedConnects, 0)}`,
      "resume gaps / duplicates / resets": `${gaps} / ${dups} / ${resets}`,
      "duplicated tool executions": duplicateTokens.length,
      "first offset violations": followers.flatMap((f) => f.violations).slice(0, 3),
      "stuck runs": stuckList.length,
      problems: problems.length,
      "first problems": problems.slice(0, 10),
      "wall time (s)": ((Date.now() - startedAt) / 1000).toFixed(1),
    });

    expect(stuckList, "runs that never ended").toEqual([]);
    expect(sent.length).toBeGreaterThanOrEqual(200);
    expect(promptErrors).toEqual([]);
    expect(kills.length).toBeGreaterThanOrEqual(3);
    expect(problems).toEqual([]);
    expect(slow, "projects that took longer than TTL + 5 s to recover from a kill").toEqual([]);
    expect(duplicateTokens).toEqual([]);
    expect(unknownTokens).toEqual([]);
    expect(gaps).toBe(0);
    expect(dups).toBe(0);
  });
});
