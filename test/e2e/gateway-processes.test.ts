// One gateway of two processes (PI_FLEET_GATEWAY_PROCESSES=2, node:cluster) in front of one
// worker, all real children sharing one Redis:
// (a) clients spread over both processes, each process relays every session's stream, and
//     `/metrics` answers for the whole gateway whichever process serves it;
// (b) one process SIGKILLed mid-stream: its clients resume on the other with their last offset
//     and miss nothing; the primary starts a replacement that serves again;
// (c) SIGTERM to the primary drains every process and exits 0;
// (d) a process that cannot start (Redis unreachable) stops the gateway with exit code 1.
// Which process holds a connection is read from /proc (the socket inodes in each child's fds).

import {
  childPids,
  connectionsByPid,
  type FakeLlm,
  findFreePort,
  startFakeLlm,
  uniquePrefix,
} from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from "vitest";
import {
  createProject,
  createSession,
  type PromptResult,
  prompt,
  registerFakeProvider,
  waitForRunEnd,
} from "../support/http.ts";
import { entriesDiff, Follower, replaySession } from "./streaming-support/clients.ts";
import { type Fleet, startFleet, stopAllFleets } from "./streaming-support/fleet.ts";

let llm: FakeLlm;
let fleet: Fleet;
const followers: Follower[] = [];
const LONG_RUN = "[[delay:10]] [[deltas:300]]";

beforeAll(async () => {
  llm = await startFakeLlm();
  fleet = await startFleet({
    redisUrl: inject("redisUrl"),
    prefix: uniquePrefix("e2e-gwp"),
    gateways: 1,
    gatewayEnv: { PI_FLEET_GATEWAY_PROCESSES: "2" },
  });
  await registerFakeProvider(fleet.gw(0).url, llm);
});

afterAll(async () => {
  await Promise.all(followers.map((f) => f.close().catch(() => undefined)));
  await stopAllFleets();
  await llm?.close();
});

function portOf(url: string): number {
  return Number(new URL(url).port);
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `GET /metrics` on a new connection each time (so different processes answer); the sample's value. */
async function metric(base: string, series: string): Promise<number> {
  const res = await fetch(`${base}/metrics`, { headers: { connection: "close" } });
  const text = await res.text();
  expect(res.status, text.slice(0, 200)).toBe(200);
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  if (!line) throw new Error(`no ${series} in /metrics`);
  return Number(line.slice(series.length + 1));
}

function follower(project: string, session: string): Follower {
  const f = new Follower("sse", project, session);
  followers.push(f);
  return f;
}

describe("a gateway of two processes", () => {
  it("spreads clients over both, relays every stream to each, and /metrics sums both", async () => {
    onTestFailed(() => console.log(fleet.logTails()));
    const gw = fleet.gw(0);
    const port = portOf(gw.url);
    const children = await waitFor("two gateway processes", 30_000, async () => {
      const pids = await childPids(gw.pid);
      return pids.length === 2 ? pids : undefined;
    });
    const project = await createProject(gw.url, "Processes");
    const sessions = await Promise.all([createSession(gw.url, project), createSession(gw.url, project)]);
    const runs = await Promise.all(sessions.map((s) => prompt(gw.url, project, s, LONG_RUN)));

    // 8 clients per session, until both processes hold some (the second may listen a moment later).
    const clients: { f: Follower; run: PromptResult }[] = [];
    await waitFor("clients on both processes", 30_000, async () => {
      for (const [k, session] of sessions.entries()) {
        const f = follower(project, session);
        const run = runs[k] as PromptResult;
        await f.connect(gw.url, { after: run.offset });
        clients.push({ f, run });
      }
      const counts = await connectionsByPid(children, port);
      return clients.length >= 16 && [...counts.values()].every((n) => n > 0) ? counts : undefined;
    });
    const counts = await connectionsByPid(children, port);
    console.log(
      `[gateway-processes] ${clients.length} SSE clients; connections per process: ${JSON.stringify([...counts])}`,
    );
    // (the test's own keep-alive API connections are counted too)
    expect(
      [...counts.values()].reduce((a, b) => a + b, 0),
      "every client is on one of the two",
    ).toBeGreaterThanOrEqual(clients.length);

    // Whichever process answers, the gauge counts the clients of both (scraping opens one more
    // request, not a stream).
    for (let i = 0; i < 4; i++) {
      expect(await metric(gw.url, 'pifleet_sse_connections{component="gateway"}')).toBe(clients.length);
    }

    await Promise.all(
      clients.map(({ f, run }) => f.until(() => f.hasRunEnd(run.runId), 60_000, "the run's end")),
    );
    await expectEveryClientGotItAll(gw.url, project, clients);
    await Promise.all(clients.map(({ f }) => f.close()));
  });

  it("loses one process mid-stream: its clients resume on the other, and a replacement serves", async () => {
    onTestFailed(() => console.log(fleet.logTails()));
    const gw = fleet.gw(0);
    const port = portOf(gw.url);
    const project = await createProject(gw.url, "Crash");
    const session = await createSession(gw.url, project);
    const run = await prompt(gw.url, project, session, LONG_RUN);
    const clients = Array.from({ length: 8 }, () => ({ f: follower(project, session), run }));
    for (const { f } of clients) {
      f.autoResume = gw.url; // what a client does: reconnect with its last offset
      await f.connect(gw.url, { after: run.offset });
    }
    await Promise.all(clients.map(({ f }) => f.until(() => f.received.length >= 20, 30_000, "20 entries")));
    const before = await childPids(gw.pid);
    const counts = await connectionsByPid(before, port);
    const [victim, held] = [...counts].sort((a, b) => b[1] - a[1])[0] ?? [0, 0];
    expect(held, `clients of the process to kill (${JSON.stringify([...counts])})`).toBeGreaterThan(0);
    expect(
      clients.some(({ f, run }) => f.hasRunEnd(run.runId)),
      "the run still streams",
    ).toBe(false);

    process.kill(victim, "SIGKILL");
    await Promise.all(
      clients.map(({ f, run }) => f.until(() => f.hasRunEnd(run.runId), 60_000, "the run's end")),
    );
    const resumed = clients.filter(({ f }) => f.serverEnds > 0).length;
    console.log(`[gateway-processes] killed pid ${victim} holding ${held} connections; ${resumed} resumed`);
    // Connections are handed out round-robin, so the 8 are on both processes: some were cut and
    // resumed, the others never noticed.
    expect(resumed, "clients of the killed process were cut and resumed").toBeGreaterThan(0);
    expect(resumed, "clients of the other process kept their stream").toBeLessThan(clients.length);
    expect(clients.flatMap(({ f }) => f.resumeErrors)).toEqual([]);
    await expectEveryClientGotItAll(gw.url, project, clients);

    // The primary forks a replacement; new connections reach it again.
    const replacement = await waitFor("a replacement process", 15_000, async () => {
      const now = await childPids(gw.pid);
      return now.length === 2 && !now.includes(victim) ? now.find((p) => !before.includes(p)) : undefined;
    });
    const more: Follower[] = [];
    await waitFor("a client on the replacement", 15_000, async () => {
      const f = follower(project, session);
      await f.connect(gw.url, { after: "0" });
      more.push(f);
      const n = (await connectionsByPid([replacement], port)).get(replacement) ?? 0;
      return n > 0 ? n : undefined;
    });
    await Promise.all(
      more.map((f) => f.until(() => f.hasRunEnd(run.runId), 30_000, "the replayed run's end")),
    );
    await Promise.all([...clients.map(({ f }) => f.close()), ...more.map((f) => f.close())]);
    expect(gw.alive(), "the gateway itself kept running").toBe(true);
  });

  it("drains every process on SIGTERM and exits 0", async () => {
    onTestFailed(() => console.log(fleet.logTails()));
    const gw = fleet.gw(0);
    const children = await childPids(gw.pid);
    expect(children).toHaveLength(2);
    const project = await createProject(gw.url, "Stop");
    const session = await createSession(gw.url, project);
    const clients = Array.from({ length: 6 }, () => follower(project, session));
    for (const f of clients) await f.connect(gw.url);
    const exit = await gw.stop("SIGTERM");
    expect(exit).toEqual({ code: 0, signal: null });
    await Promise.all(clients.map((f) => f.ended)); // every stream was ended, none left hanging
    for (const pid of children) expect(() => process.kill(pid, 0), `process ${pid} is gone`).toThrow();
  });
});

describe("a gateway of two processes that cannot start", () => {
  it("exits 1 with the processes' reason when Redis is unreachable", async () => {
    const closedPort = await findFreePort();
    const bad = await startFleet({
      redisUrl: `redis://127.0.0.1:${closedPort}`,
      prefix: uniquePrefix("e2e-gwp-bad"),
      gateways: 0,
      workers: [],
    });
    const gw = await bad.spawnGateway({ PI_FLEET_GATEWAY_PROCESSES: "2" });
    const exit = await gw.exit;
    expect(exit.code, gw.logs()).toBe(1);
    expect(gw.logs()).toMatch(/Redis/);
    expect(gw.logs()).toMatch(/exited before it listened/);
  });
});

/** Each client's entries equal its session's replay after the run's `run_queued` offset. */
async function expectEveryClientGotItAll(
  base: string,
  project: string,
  clients: { f: Follower; run: PromptResult }[],
): Promise<void> {
  const bySession = new Map<string, { f: Follower; run: PromptResult }[]>();
  for (const c of clients) bySession.set(c.f.session, [...(bySession.get(c.f.session) ?? []), c]);
  for (const [session, group] of bySession) {
    const run = group[0]?.run as PromptResult;
    await waitForRunEnd(base, project, session, run.runId);
    const { entries } = await replaySession(base, project, session);
    const want = entries.slice(entries.findIndex((e) => e.id === run.offset) + 1);
    for (const { f } of group) {
      expect(f.violations, "offsets strictly increasing").toEqual([]);
      expect(f.idless, "no stream_reset / stream_lagging").toEqual([]);
      const got = f.received.map((r) => ({ id: r.id, data: r.data }));
      expect(entriesDiff(got, want), "a client's events vs the replay").toBeUndefined();
    }
  }
}
