// Redis restart under load: stop redis-server (SIGTERM; AOF on) while runs are queued and
// running, keep it down for longer than the lease TTL, start it again on the same port and dir.
// Gateways and workers reconnect by themselves (readiness recovers) and every run acknowledged
// before the stop ends in a terminal event: finished, or interrupted if it was running when its
// lease lapsed. SSE followers resume through the outage without gaps or duplicates.
// Also: SSE resumes (Last-Event-ID) that arrive while Redis restarts get exactly the entries
// after their cursor.

import { randomBytes } from "node:crypto";
import { type FakeLlm, openSse, startFakeLlm } from "@pi-fleet/testkit";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type Answer,
  call,
  createProject,
  createSession,
  eventsUrl,
  type PromptAnswer,
  prompt,
  registerFake,
  sessionPath,
  TERMINAL_EVENTS,
  TERMINAL_STATES,
} from "./support/api.ts";
import { poll, printFigures, ranTokens, settleRuns, sleep } from "./support/checks.ts";
import { type Cluster, startCluster } from "./support/cluster.ts";
import { type Entry, offsetMs, replaySession, SessionFollower } from "./support/follower.ts";
import { seededRng } from "./support/prng.ts";
import { stopAllProcs } from "./support/procs.ts";

const SEED = 0x5eed02;
const TTL_MS = 2000;
const DOWN_MS = 3500; // longer than the TTL: every lease lapses while Redis is away

let fake: FakeLlm;
let c: Cluster;
const followers: SessionFollower[] = [];

beforeAll(async () => {
  fake = await startFakeLlm();
  c = await startCluster({ label: "redis-restart", workerEnv: { PI_FLEET_LEASE_TTL_MS: String(TTL_MS) } });
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

interface Sent {
  project: string;
  session: string;
  answer: PromptAnswer;
  token: string;
}

describe("redis restart", () => {
  it("a resume that arrives while Redis restarts gets exactly the entries after its cursor", async () => {
    const gateways = [c.gw(0).url, c.gw(1).url];
    const project = await createProject(gateways[0] ?? "", "redis-resume");
    const session = await createSession(gateways[0] ?? "", project);
    const run = await prompt(gateways[0] ?? "", project, session, "[[bash:echo resume >> ran.txt]]");
    await poll(
      "the run to end",
      async () => {
        const r = await call<{ status: string }>(
          gateways[1] ?? "",
          "GET",
          `${sessionPath(project, session)}/runs/${run.runId}`,
        );
        return TERMINAL_STATES.has(r.json?.status ?? "") ? true : undefined;
      },
      20_000,
    );
    const all = await replaySession(gateways[0] ?? "", project, session);
    const cursorIndex = Math.floor(all.length / 2);
    const cursor = all[cursorIndex]?.id ?? "0";
    const expected = all.slice(cursorIndex + 1).map((e) => e.id);
    /** Served, and not exactly the entries after the cursor nor a prefix the server ended. */
    const isWrong = (o: { status: number; ids: string[]; idless: number; endedByServer: boolean }) => {
      if (o.status !== 200) return false;
      if (o.ids.join() === expected.join()) return false;
      const prefix = o.ids.every((id, i) => id === expected[i]) && o.ids.length < expected.length;
      return !(o.endedByServer && prefix);
    };

    // A storm of resumes (alternating gateways, every 50 ms) from the stop until well after the
    // restart; Redis comes back after DOWN_MS. Each served resume is held until it has every entry
    // after its cursor, the server ends it, or HOLD_MS passes (longer than the outage plus
    // reconnect backoffs: a read queued while Redis is away completes once it is back). The window
    // that matters (a resume admitted before the gateway's pub/sub connection is back) depends on
    // reconnect backoffs, so up to 3 stop/restart cycles run; the first one with a wrong answer
    // ends the loop. Right answers: exactly the entries after the cursor, or — when the gateway
    // gave up on a failed Redis read and ended the response — a prefix of them (the client
    // resumes from its last id). Never an entry at or before the cursor, a gap or a stall.
    const HOLD_MS = DOWN_MS + 8000;
    const outcomes: { status: number; ids: string[]; idless: number; endedByServer: boolean }[] = [];
    let cycles = 0;
    for (; cycles < 3; cycles++) {
      c.redis.kill("SIGTERM");
      const opened: Promise<void>[] = [];
      const stoppedAt = Date.now();
      let restarted: Promise<void> | undefined;
      for (let i = 0; i < 110; i++) {
        if (!restarted && Date.now() - stoppedAt >= DOWN_MS) restarted = c.redis.restart();
        const base = gateways[i % 2] ?? "";
        opened.push(
          (async () => {
            try {
              const conn = await openSse(eventsUrl(base, project, session), {
                lastEventId: cursor,
                connectTimeoutMs: 10_000,
              });
              if (conn.status === 200) {
                await conn
                  .waitFor(
                    (_, all) => all.filter((e) => e.id !== undefined).length >= expected.length,
                    HOLD_MS,
                  )
                  .catch(() => {}); // ended by the server or timed out: judged below
                await sleep(200); // anything past the expected entries would show up here
              }
              const endedByServer = conn.ended;
              conn.close();
              await conn.closed;
              outcomes.push({
                status: conn.status,
                ids: conn.events.flatMap((e) => (e.id === undefined ? [] : [e.id])),
                idless: conn.events.filter((e) => e.id === undefined).length,
                endedByServer,
              });
            } catch {
              outcomes.push({ status: 0, ids: [], idless: 0, endedByServer: true });
            }
          })(),
        );
        await sleep(50);
      }
      await (restarted ?? c.redis.restart());
      await Promise.all(opened);
      for (const g of gateways) {
        await poll(
          "gateway ready",
          async () => ((await call(g, "GET", "/v1/readyz")).status === 200 ? true : undefined),
          20_000,
        );
      }
      if (outcomes.some(isWrong)) break;
    }
    const served = outcomes.filter((o) => o.status === 200);
    const wrong = served.filter(isWrong);
    const cutShort = served.filter((o) => !isWrong(o) && o.ids.length < expected.length);
    const older = served.filter((o) => o.ids.some((id) => offsetMs(id) < offsetMs(cursor)));
    printFigures("resume across a Redis restart", {
      "stop/restart cycles": Math.min(cycles + 1, 3),
      "resume attempts": outcomes.length,
      "by status": Object.fromEntries(
        [...new Set(outcomes.map((o) => o.status))].map((st) => [
          st,
          outcomes.filter((o) => o.status === st).length,
        ]),
      ),
      "entries expected after the cursor": expected.length,
      "served with a different sequence": wrong.length,
      "ended by the gateway with a prefix (client resumes)": cutShort.length,
      "served entries older than the cursor": older.length,
      "first wrong (entries, first id, resets)": wrong
        .slice(0, 3)
        .map((o) => `${o.ids.length} ${o.ids[0]} ${o.idless} ${o.endedByServer}`),
    });
    expect(served.length).toBeGreaterThan(0);
    // Most resumes must be served whole: a test where every resume was cut short proves little.
    expect(served.length - cutShort.length).toBeGreaterThan(served.length / 2);
    expect(
      wrong.map(
        (o) =>
          `${o.ids.length}/${expected.length} entries from ${o.ids[0]} (${o.idless} resets, ` +
          `${o.endedByServer ? "ended by the server" : "still open"})`,
      ),
    ).toEqual([]);
  });

  it("every run acknowledged before the stop ends; processes reconnect by themselves", async () => {
    const rng = seededRng(SEED);
    const gateways = [c.gw(0).url, c.gw(1).url];
    const lanes: { project: string; session: string }[] = [];
    for (let p = 1; p <= 5; p++) {
      const project = await createProject(c.gw(0).url, `redis-${p}`);
      for (let s = 0; s < 2; s++) lanes.push({ project, session: await createSession(c.gw(1).url, project) });
    }
    for (const [i, lane] of lanes.entries()) {
      const f = new SessionFollower({
        gateways: () => gateways,
        ...lane,
        rng: seededRng(SEED + 100 + i),
        holdMs: [400, 2000],
      });
      followers.push(f);
      f.start();
    }

    // Load: 5 runs per session, short and longer ones, all acknowledged before the stop.
    const sent: Sent[] = [];
    for (let round = 0; round < 5; round++) {
      for (const lane of lanes) {
        const token = `rr-${round}-${randomBytes(4).toString("hex")}`;
        const delay = rng.pick([0, 20, 40, 80]);
        const text = `[[bash:echo ${token} >> ran.txt]] [[delay:${delay}]]`;
        const answer = await prompt(gateways[rng.int(0, 1)] ?? "", lane.project, lane.session, text);
        sent.push({ ...lane, answer, token });
      }
    }
    await sleep(700);

    // Stop Redis, keep it down past the lease TTL, start it again (same port, same dir, AOF).
    const stopAt = Date.now();
    c.redis.kill("SIGTERM");
    await poll(
      "gateway readiness to fail",
      async () => ((await call(gateways[0] ?? "", "GET", "/v1/readyz")).status === 503 ? true : undefined),
      10_000,
    );
    const lane0 = lanes[0] ?? { project: "", session: "" };
    const duringOutage: Answer = await call(
      gateways[1] ?? "",
      "POST",
      `${sessionPath(lane0.project, lane0.session)}/prompt`,
      { text: "[[reply:during the outage]]" },
      5000,
    );
    await sleep(Math.max(0, DOWN_MS - (Date.now() - stopAt)));
    await c.redis.restart();
    const upAt = Date.now();

    // Readiness recovers without help.
    const readyMs: Record<string, number> = {};
    await Promise.all(
      [
        ...c.gateways.map((g) => ({ name: g.name, url: `${g.url}/v1/readyz` })),
        ...[...c.workers.values()].map((w) => ({ name: w.name, url: `${w.healthUrl}/readyz` })),
      ].map(async ({ name, url }) => {
        await poll(
          `${name} ready again`,
          async () => ((await call(url, "GET", "")).status === 200 ? true : undefined),
          30_000,
          50,
        );
        readyMs[name] = Date.now() - upAt;
      }),
    );

    // Every acknowledged run ends (bounded wait; stuck runs are reported, not waited for).
    const settled = await settleRuns(
      gateways,
      sent.map((x) => ({ project: x.project, session: x.session, runId: x.answer.runId })),
      20_000,
    );
    const statusOf = (x: Sent): string => settled.get(x.answer.runId)?.status ?? "?";
    const stuck = sent.filter((x) => !TERMINAL_STATES.has(statusOf(x)));
    const diagnosis =
      stuck.length === 0
        ? ""
        : (
            await Promise.all(
              [...new Set(stuck.map((x) => x.project))].map((p) =>
                c.diagnose(
                  p,
                  stuck.filter((x) => x.project === p).map((x) => x.answer.runId),
                ),
              ),
            )
          ).join("\n");
    const ended = sent.filter((x) => TERMINAL_STATES.has(statusOf(x)));
    await Promise.all(
      followers.map((f) =>
        f
          .waitTerminal(
            ended.filter((x) => x.session === f.session).map((x) => x.answer.runId),
            15_000,
          )
          .catch(() => undefined),
      ),
    );
    await Promise.all(followers.map((f) => f.stop()));

    // Per-run checks against the final replay of each session.
    const byState: Record<string, number> = {};
    const startedBeforeStop: Record<string, number> = {};
    let gaps = 0;
    const problems: string[] = [];
    for (const f of followers) {
      const replay: Entry[] = await replaySession(gateways[0] ?? "", f.project, f.session);
      const seen = new Set(f.entries.map((e) => `${e.id}\n${e.data}`));
      const lastSeen = f.lastId;
      // Entries up to the follower's last offset that it did not get.
      gaps += replay.filter(
        (e) =>
          lastSeen !== undefined && offsetMs(e.id) <= offsetMs(lastSeen) && !seen.has(`${e.id}\n${e.data}`),
      ).length;
      const tokens = await ranTokens(c, f.project);
      for (const s of sent.filter((x) => x.session === f.session)) {
        const id = s.answer.runId;
        const status = statusOf(s);
        byState[status] = (byState[status] ?? 0) + 1;
        const events = replay.filter((e) => e.runId === id);
        const start = events.find((e) => e.type === "run_started");
        if (start && offsetMs(start.id) < stopAt) {
          startedBeforeStop[status] = (startedBeforeStop[status] ?? 0) + 1;
        }
        const terms = events.filter((e) => TERMINAL_EVENTS.has(e.type)).map((e) => e.type);
        if (TERMINAL_STATES.has(status) && (terms.length !== 1 || terms[0] !== `run_${status}`)) {
          problems.push(`${id}: terminal events ${terms.join(",")} but state ${status}`);
        }
        if (status === "interrupted" && !start) problems.push(`${id}: interrupted but never started`);
        if (TERMINAL_STATES.has(status) && status !== "finished" && status !== "interrupted") {
          problems.push(`${id}: ended ${status}`);
        }
        const n = tokens.get(s.token) ?? 0;
        if (n > 1 || (status === "finished" && n !== 1))
          problems.push(`${id}: tool ran ${n}× (state ${status})`);
      }
    }
    const dups = followers.reduce((a, f) => a + f.violations.length, 0);

    printFigures("redis restart", {
      "runs acknowledged before the stop": sent.length,
      "runs by state": byState,
      "runs started before the stop, by final state": startedBeforeStop,
      "Redis down (ms)": upAt - stopAt,
      "prompt during the outage": `${duringOutage.status} ${duringOutage.text.slice(0, 120)}`,
      "restart → ready (ms)": readyMs,
      "follower connections / failed connects": `${followers.reduce((a, f) => a + f.connections, 0)} / ${followers.reduce((a, f) => a + f.failedConnects, 0)}`,
      "resume gaps / duplicates / resets": `${gaps} / ${dups} / ${followers.reduce((a, f) => a + f.idless.length, 0)}`,
      "first offset violations": followers.flatMap((f) => f.violations).slice(0, 4),
      "stuck runs": stuck.length,
      problems: problems.slice(0, 10),
    });
    if (diagnosis) console.log(`STUCK RUNS after the Redis restart:\n${diagnosis}`);

    expect(
      stuck.map((x) => `${x.project}/${x.answer.runId}: ${statusOf(x)}`),
      "runs acknowledged before the stop that never ended",
    ).toEqual([]);
    expect(problems).toEqual([]);
    expect(gaps, "resume gaps").toBe(0);
    expect(dups, "entries delivered again or out of order after a resume").toBe(0);
    // A gateway whose Redis is away answers 503 (Retry-After), not 500.
    expect(duringOutage.status).toBe(503);
  });
});
