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
  socketsByPid,
  spawnRedis,
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

    // Each process binds its own listening socket (SO_REUSEPORT); the primary accepts nothing.
    await waitFor("a listening socket in each process", 30_000, async () => {
      const listening = await connectionsByPid(children, port, "listen");
      return [...listening.values()].every((n) => n === 1) ? listening : undefined;
    });
    expect((await connectionsByPid([gw.pid], port, "listen")).get(gw.pid)).toBe(0);

    // Clients in pairs until 16 and both processes hold some of them (the kernel spreads them).
    const clients: { f: Follower; run: PromptResult }[] = [];
    const { added } = await openUntilSpread(
      children,
      port,
      () =>
        Promise.all(
          sessions.map(async (session, k) => {
            const f = follower(project, session);
            const run = runs[k] as PromptResult;
            await f.connect(gw.url, { after: run.offset });
            clients.push({ f, run });
          }),
        ),
      16,
      () => clients.length,
    );
    console.log(
      `[gateway-processes] ${clients.length} SSE clients per process: ${JSON.stringify([...added])}`,
    );
    expect(
      [...added.values()].reduce((a, b) => a + b, 0),
      "every client is on one of the two",
    ).toBe(clients.length);

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
    const before = await childPids(gw.pid);
    const clients: { f: Follower; run: PromptResult }[] = [];
    const { added } = await openUntilSpread(
      before,
      port,
      async () => {
        const f = follower(project, session);
        f.autoResume = gw.url; // what a client does: reconnect with its last offset
        await f.connect(gw.url, { after: run.offset });
        clients.push({ f, run });
      },
      8,
      () => clients.length,
    );
    await Promise.all(clients.map(({ f }) => f.until(() => f.received.length >= 20, 30_000, "20 entries")));
    const [victim, held] = [...added].sort((a, b) => b[1] - a[1])[0] ?? [0, 0];
    expect(
      clients.some(({ f, run }) => f.hasRunEnd(run.runId)),
      "the run still streams",
    ).toBe(false);
    const requestsBefore = await totalRequests(gw.url);

    process.kill(victim, "SIGKILL");
    // /metrics answers at once all along (a starting replacement is not waited for), and its
    // counters do not go back when a process goes (what the dead one counted stays in the sum).
    let requests = requestsBefore;
    const replacement = await waitFor("a replacement process", 20_000, async () => {
      const t0 = Date.now();
      const now = await totalRequests(gw.url);
      expect(Date.now() - t0, "a scrape during the replacement").toBeLessThan(3000);
      expect(now, "requests counted by the whole gateway").toBeGreaterThanOrEqual(requests);
      requests = now;
      const pids = await childPids(gw.pid);
      const fresh = pids.find((p) => !before.includes(p));
      if (pids.length !== 2 || fresh === undefined) return undefined;
      const listening = (await connectionsByPid([fresh], port, "listen")).get(fresh) ?? 0;
      return listening === 1 ? fresh : undefined;
    });
    await Promise.all(
      clients.map(({ f, run }) => f.until(() => f.hasRunEnd(run.runId), 60_000, "the run's end")),
    );
    const resumed = clients.filter(({ f }) => f.serverEnds > 0).length;
    console.log(`[gateway-processes] killed pid ${victim} holding ${held} clients; ${resumed} resumed`);
    expect(resumed, "exactly the killed process's clients were cut, and they resumed").toBe(held);
    expect(clients.flatMap(({ f }) => f.resumeErrors)).toEqual([]);
    await expectEveryClientGotItAll(gw.url, project, clients);

    // New connections reach the replacement.
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

describe("a gateway of two processes starting, stopping and losing Redis", () => {
  it("exits 1 with the processes' reason when Redis is unreachable at start", async () => {
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
    expect(gw.logs()).toMatch(/exited before the gateway was ready/);
  });

  it("exits 0 on SIGTERM while its processes are still starting", async () => {
    const f = await startFleet({
      redisUrl: inject("redisUrl"),
      prefix: uniquePrefix("e2e-gwp-early"),
      gateways: 0,
      workers: [],
    });
    // From the moment the primary handles signals (before that, a signal ends any Node process).
    for (const afterMs of [0, 400]) {
      const gw = await f.spawnGateway({ PI_FLEET_GATEWAY_PROCESSES: "2", LOG_LEVEL: "info" });
      await waitFor("the primary", 30_000, async () =>
        /gateway primary started/.test(gw.logs()) ? true : undefined,
      );
      await new Promise((r) => setTimeout(r, afterMs));
      const exit = await gw.stop("SIGTERM");
      expect(exit, `SIGTERM ${afterMs} ms after the start\n${gw.logs()}`).toEqual({ code: 0, signal: null });
    }
  });

  it("keeps serving through a Redis outage in which a process dies and its replacement cannot start", async () => {
    const redis = await spawnRedis();
    try {
      const f = await startFleet({
        redisUrl: redis.url,
        prefix: uniquePrefix("e2e-gwp-blip"),
        gateways: 1,
        workers: [],
        gatewayEnv: { PI_FLEET_GATEWAY_PROCESSES: "2", LOG_LEVEL: "info" },
      });
      onTestFailed(() => console.log(f.logTails(60)));
      const gw = f.gw(0);
      const port = portOf(gw.url);
      await waitFor("both processes ready", 30_000, async () =>
        /gateway processes ready/.test(gw.logs()) ? true : undefined,
      );
      const before = await childPids(gw.pid);
      redis.kill("SIGKILL");
      process.kill(before[0] as number, "SIGKILL");
      // Replacements after 1 s and 2 s more fail (no Redis) and are retried later, not fatal.
      await waitFor("a failed replacement", 15_000, async () =>
        /exited, starting a replacement[^\n]*"wasReady":false|"wasReady":false[^\n]*starting a replacement/.test(
          gw.logs(),
        )
          ? true
          : undefined,
      );
      expect(gw.alive(), "the gateway survived the failed replacement").toBe(true);
      await redis.restart();
      const fresh = await waitFor("a replacement serving", 40_000, async () => {
        const pids = await childPids(gw.pid);
        if (pids.length !== 2 || pids.includes(before[0] as number)) return undefined;
        const listening = await connectionsByPid(pids, port, "listen");
        return [...listening.values()].every((n) => n === 1) ? pids : undefined;
      });
      expect(fresh).toContain(before[1]); // the healthy process kept running all along
      const res = await fetch(`${gw.url}/v1/readyz`);
      expect(res.status).toBe(200);
    } finally {
      await redis.stop();
    }
  });
});

/**
 * Calls `open` (which opens one or more stream clients) until `total()` reaches `atLeast` and every
 * process in `pids` holds at least one of the new connections; returns the new connections per
 * process (established connections to `port` that were not there before: no other connection may
 * open meanwhile).
 */
async function openUntilSpread(
  pids: number[],
  port: number,
  open: () => Promise<unknown>,
  atLeast: number,
  total: () => number,
): Promise<{ added: Map<number, number> }> {
  const baseline = await socketsByPid(pids, port);
  const added = await waitFor("clients on every process", 30_000, async () => {
    await open();
    const now = await socketsByPid(pids, port);
    const diff = new Map(
      pids.map((p) => [p, [...(now.get(p) ?? [])].filter((i) => !baseline.get(p)?.has(i)).length]),
    );
    return total() >= atLeast && [...diff.values()].every((n) => n > 0) ? diff : undefined;
  });
  return { added };
}

/**
 * Requests the whole gateway has answered (the sum of its request-duration histogram's counts). A
 * connection the kernel had queued for a process that just died is reset: retried, as a client
 * would.
 */
async function totalRequests(base: string): Promise<number> {
  let res: Response | undefined;
  for (let attempt = 1; !res; attempt++) {
    try {
      res = await fetch(`${base}/metrics`, { headers: { connection: "close" } });
    } catch (err) {
      if (attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const text = await res.text();
  expect(res.status, text.slice(0, 200)).toBe(200);
  return text
    .split("\n")
    .filter((l) => l.startsWith("pifleet_http_request_duration_seconds_count{"))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

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
