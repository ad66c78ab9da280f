/**
 * `npm run bench:stream`: live fan-out of session streams through one gateway, against the naive
 * design (one blocking XREAD per subscriber) as the baseline.
 *
 * Separate processes on one machine: a private redis-server; the gateway
 * (`apps/gateway/src/main.ts`, fresh for each scenario); a producer appending bench events with
 * `EventLog.append` (append-events.lua: XADD + PUBLISH) at a paced rate round-robin over the
 * sessions; client processes holding the SSE connections (or, for the baseline, one Redis
 * connection per subscriber). Latency is append → client receipt on the shared monotonic clock
 * (`process.hrtime`): the producer stamps each event just before the append call, a client
 * stamps each received chunk. Per scenario: events/s produced, frames/s delivered, p50/p99/max,
 * CPU of every process (`/proc/<pid>/stat`), gateway RSS (`/proc/<pid>/status`) idle, connected
 * and under load, connection setup rate, and the catch-up time of a client 10k events behind.
 * See bench/README.md.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_ORG } from "@pi-fleet/contracts";
import { connectRedis, createKeys, type Redis } from "@pi-fleet/redis";
import { childPids, connectionsByPid, findFreePort, type SpawnedRedis, spawnRedis } from "@pi-fleet/testkit";
import { markdownTable, type Table, textTable } from "./lib/table.ts";
import { type Child, setUnexpectedExitHandler, startNode, stopAll } from "./stream/children.ts";
import { benchEvent } from "./stream/event.ts";
import { Histogram } from "./stream/histogram.ts";
import { CpuWindow, cpuSeconds, openFileLimit, rssBytes, sumOver } from "./stream/proc.ts";
import { type ProfileSummary, summarizeProfile } from "./stream/profile.ts";
import type { ClientReport, NaiveClientsApi, ProducerApi, SseClientsApi } from "./stream/protocol.ts";
import { averageQueues, type QueueSample, sampleQueues } from "./stream/queues.ts";
import { RpcClient } from "./stream/rpc.ts";
import {
  BenchAbort,
  environment,
  errorMessage,
  fmtCores,
  fmtInt,
  fmtKiB,
  fmtMiB,
  fmtMs,
  intFromEnv,
  listFromEnv,
  log,
  nowUs,
  sleep,
} from "./stream/util.ts";

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "stream.md");
const PREFIX = "bench";

const SCENARIOS = listFromEnv("BENCH_STREAM_SCENARIOS", [1000, 5000, 10000]);
const PROCESSES = listFromEnv("BENCH_STREAM_GATEWAY_PROCESSES", [1, 2]);
const NAIVE = listFromEnv("BENCH_STREAM_NAIVE", [1000, 2000, 5000]);
const SECONDS = intFromEnv("BENCH_STREAM_SECONDS", 10, 1);
const WARMUP_S = intFromEnv("BENCH_STREAM_WARMUP", 3, 0);
const SESSIONS = intFromEnv("BENCH_STREAM_SESSIONS", 100, 1);
const FRAMES = intFromEnv("BENCH_STREAM_FRAMES", 50_000, 1);
const CLIENT_PROCS = intFromEnv("BENCH_STREAM_CLIENT_PROCS", 2, 1);
const CATCHUP = intFromEnv("BENCH_STREAM_CATCHUP", 10_000, 0);
const PROFILE = intFromEnv("BENCH_STREAM_PROFILE", 0, 0);
const TIMEOUT_MS = intFromEnv("BENCH_TIMEOUT_MS", 600_000, 10_000);

/** Goal of the issue, on a 2-core machine. */
const GOAL = { subscribers: 10_000, frames: 50_000, p99Ms: 20 };
/** Bound on the catch-up measurement under load (it is counted as failed beyond). */
const CATCHUP_TIMEOUT_MS = 30_000;
/** SSE connection setups in flight per client process. */
const OPEN_CONCURRENCY = 64;
/** File descriptors a process needs besides its subscriber sockets. */
const FD_SLACK = 256;
const MAX_LEN = Math.max(10_000, CATCHUP + 1000);

// ---------------------------------------------------------------------------------------------
// Everything the bench started, torn down by cleanup() whatever happened.

interface Resources {
  redis?: SpawnedRedis;
  cmd?: Redis;
  dirs: string[];
}

const res: Resources = { dirs: [] };
let stopping = false;
let fail: (err: Error) => void = () => {};
const failed = new Promise<never>((_, reject) => {
  fail = reject;
});
failed.catch(() => {});
let lastChildTail: { name: string; lines: string[] } | undefined;

setUnexpectedExitHandler((child, code, signal) => {
  if (stopping) return;
  lastChildTail = { name: child.name, lines: child.tail() };
  fail(new BenchAbort(`${child.name} exited unexpectedly (code ${code}, signal ${signal})`));
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => fail(new BenchAbort(`interrupted by ${signal}`)));
}

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  res.dirs.push(dir);
  return dir;
}

async function step(what: string, fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    log(`cleanup: ${what} failed: ${errorMessage(err)}`);
  }
}

async function cleanup(): Promise<void> {
  stopping = true;
  await step("stopping child processes", () => stopAll(15_000));
  const { cmd, redis } = res;
  if (cmd) await step("closing the Redis connection", async () => cmd.disconnect());
  if (redis) await step("stopping redis-server", () => redis.stop());
  for (const dir of res.dirs) await step(`removing ${dir}`, () => rm(dir, { recursive: true, force: true }));
}

// ---------------------------------------------------------------------------------------------
// Open-file limits: every SSE connection is a socket in the gateway and in a client process.
// Node raises its soft RLIMIT_NOFILE to the hard limit at startup (and redis-server raises its
// own for `maxclients`), so the hard limit inherited from this process is what counts.

const limit = openFileLimit();

/** The largest subscriber count (in steps of 100) whose sockets one process can hold under the hard limit. */
function reachable(n: number): number {
  if (!limit) return n;
  let m = n;
  while (m > 0 && m + FD_SLACK > limit.hard) m -= 100;
  return Math.max(m, 0);
}

// ---------------------------------------------------------------------------------------------
// Processes.

function nodeEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    // The engine is measured, not the per-org limits (open mode shares one org).
    PI_FLEET_ORG_RATE_LIMIT: "0",
    PI_FLEET_MAX_STREAMS_PER_KEY: "1000000",
    PI_FLEET_ORG_MAX_RUNS: "0",
    HOME: process.env.HOME ?? tmpdir(),
    ...extra,
  };
}

interface Gateway {
  child: Child;
  /** The gateway's processes: the primary and its children when it runs several, else the one. */
  pids: number[];
  port: number;
  base: string;
  profileFile: string | undefined;
}

/**
 * Resolves once each of the `count` children of a multi-process gateway serves connections: holds
 * probe connections open (the primary hands them out round-robin) until every child has one.
 */
async function waitForProcesses(pid: number, port: number, count: number): Promise<number[]> {
  const deadline = Date.now() + 60_000;
  const probes: Socket[] = [];
  try {
    for (;;) {
      const children = await childPids(pid);
      if (children.length === count) {
        const held = await connectionsByPid(children, port);
        if ([...held.values()].every((n) => n > 0)) return children;
      }
      if (Date.now() > deadline) {
        throw new Error(`the gateway's ${count} processes did not all serve within 60 s`);
      }
      const socket = connect({ host: "127.0.0.1", port });
      socket.on("error", () => {});
      probes.push(socket);
      await new Promise<void>((resolve) => {
        socket.once("data", () => resolve());
        socket.once("close", () => resolve());
        socket.write("GET /v1/healthz HTTP/1.1\r\nHost: bench\r\n\r\n");
      });
    }
  } finally {
    for (const s of probes) s.destroy();
  }
}

async function startGateway(redisUrl: string, profile: boolean, processes = 1): Promise<Gateway> {
  const workspace = await tempDir("pf-bench-stream-gw-");
  const port = await findFreePort();
  const profileDir = profile ? join(workspace, "profile") : undefined;
  const child = startNode("gateway", "apps/gateway/src/main.ts", {
    cwd: REPO_ROOT,
    env: nodeEnv({
      REDIS_URL: redisUrl,
      PORT: String(port),
      HOST: "127.0.0.1",
      WORKSPACE_DIR: join(workspace, "workspace"),
      PI_FLEET_KEY_PREFIX: PREFIX,
      PI_FLEET_STREAM_MAXLEN: String(MAX_LEN),
      PI_FLEET_SSE_HEARTBEAT_MS: "120000",
      PI_FLEET_GATEWAY_PROCESSES: String(processes),
      LOG_LEVEL: "warn",
    }),
    nodeArgs: profileDir
      ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`, "--cpu-prof-name=gateway.cpuprofile"]
      : [],
  });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const r = await fetch(`${base}/v1/readyz`, { signal: AbortSignal.timeout(2000) });
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error("the gateway was not ready within 60 s (GET /v1/readyz)");
    await sleep(100);
  }
  const pids =
    processes > 1 ? [child.pid, ...(await waitForProcesses(child.pid, port, processes))] : [child.pid];
  return {
    child,
    pids,
    port,
    base,
    profileFile: profileDir ? join(profileDir, "gateway.cpuprofile") : undefined,
  };
}

function startWorker<A extends Record<string, { req: unknown; res: unknown }>>(
  name: string,
  script: string,
): { child: Child; rpc: RpcClient<A> } {
  const child = startNode(name, script, {
    cwd: REPO_ROOT,
    env: nodeEnv(),
    ipc: true,
  });
  return { child, rpc: new RpcClient<A>(child.proc, name) };
}

async function api<T>(base: string, method: string, path: string, body?: unknown): Promise<T> {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path} → HTTP ${r.status}: ${text}`);
  return JSON.parse(text) as T;
}

/** `INFO` fields of the bench's Redis. */
async function redisInfo(section: string): Promise<Map<string, string>> {
  const cmd = res.cmd;
  if (!cmd) throw new Error("no Redis connection");
  const text = await cmd.info(section);
  const out = new Map<string, string>();
  for (const line of text.split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0) out.set(line.slice(0, i), line.slice(i + 1));
  }
  return out;
}

/**
 * The gateway's hub connection as Redis sees it (`CLIENT LIST`, the client named `…:hub`): its
 * local port (to find the socket in /proc/net/tcp) and `omem`, the pub/sub bytes Redis could not
 * even hand to the kernel yet.
 */
async function hubClients(): Promise<{ port: number; omem: number }[]> {
  const cmd = res.cmd;
  if (!cmd) return [];
  const list = String(await cmd.call("CLIENT", "LIST", "TYPE", "pubsub"));
  const hubs: { port: number; omem: number }[] = [];
  for (const line of list.split("\n")) {
    if (!/ name=\S*:hub /.test(line)) continue;
    const addr = / addr=[^ ]*:(\d+) /.exec(line);
    const omem = / omem=(\d+)/.exec(line);
    if (addr && omem) hubs.push({ port: Number(addr[1]), omem: Number(omem[1]) });
  }
  return hubs;
}

/** Bytes on the wire of one SSE frame and of one pub/sub announcement of a bench event. */
function wireSizes(s: Setup): { frame: number; message: number } {
  const event = benchEvent(1234, nowUs());
  const id = `${Date.now()}-0`;
  const frame = `id: ${id}\ndata: ${event}\n\n`;
  const channel = createKeys(PREFIX).streamChannel(DEFAULT_ORG, s.project, s.sessions[0] ?? "");
  const payload = `${"0".repeat(16)}\n${id}\n${id}\n${event}`;
  const message = `*3\r\n$7\r\nmessage\r\n$${channel.length}\r\n${channel}\r\n$${payload.length}\r\n${payload}\r\n`;
  // + the chunked-encoding framing of one frame ("<hex>\r\n…\r\n").
  return { frame: frame.length + frame.length.toString(16).length + 4, message: message.length };
}

const commandsProcessed = async (): Promise<number> =>
  Number((await redisInfo("stats")).get("total_commands_processed") ?? Number.NaN);

// ---------------------------------------------------------------------------------------------
// Results.

interface Result {
  design: "hub" | "naive";
  /** Gateway processes (`PI_FLEET_GATEWAY_PROCESSES`; 1 for the naive design). */
  processes: number;
  /** Subscribers asked for, and actually connected. */
  subscribers: number;
  connected: number;
  eventsPerSec: number;
  framesPerSec: number;
  expectedFramesPerSec: number;
  latency: Histogram;
  cpu: Record<string, number | undefined>;
  machine: number | undefined;
  redisCmdsPerSec: number;
  /** Server = the gateway (hub) or the naive reader process. */
  rssIdle: number | undefined;
  rssConnected: number | undefined;
  rssLoaded: number | undefined;
  redisRssDelta: number | undefined;
  setupMs: number;
  setupServerCpu: number | undefined;
  /** The timed catch-up, or why it did not complete. */
  catchup: { headMs: number; firstMs: number; lastMs: number } | { failed: string } | undefined;
  /** Average socket queues during the window, as ms of traffic (hub only). */
  queuedMs: { gatewayIn: number | undefined; clientsIn: number } | undefined;
  anomalies: string[];
  appendP99Ms: number;
}

function mergeReports(reports: ClientReport[]): {
  framesPerSec: number;
  latency: Histogram;
  anomalies: string[];
} {
  const latency = new Histogram();
  let framesPerSec = 0;
  const totals = { gaps: 0, dups: 0, lagging: 0, resets: 0, ended: 0 };
  for (const r of reports) {
    framesPerSec += r.frames / r.seconds;
    latency.add(r.latency);
    totals.gaps += r.gaps;
    totals.dups += r.dups;
    totals.lagging += r.lagging;
    totals.resets += r.resets;
    totals.ended += r.ended;
  }
  const anomalies: string[] = [];
  if (totals.gaps) anomalies.push(`${totals.gaps} sequence gaps`);
  if (totals.dups) anomalies.push(`${totals.dups} duplicates`);
  if (totals.lagging) anomalies.push(`${totals.lagging} stream_lagging`);
  if (totals.resets) anomalies.push(`${totals.resets} stream_reset`);
  if (totals.ended) anomalies.push(`${totals.ended} connections ended`);
  if (latency.negative) anomalies.push(`${latency.negative} negative latencies`);
  return { framesPerSec, latency, anomalies };
}

/** Splits `items` round-robin into `n` parts. */
function split<T>(items: readonly T[], n: number): T[][] {
  const parts: T[][] = Array.from({ length: n }, () => []);
  for (let i = 0; i < items.length; i++) parts[i % n]?.push(items[i] as T);
  return parts;
}

/** Producer rate that makes `subscribers` spread over the sessions receive FRAMES frames/s. */
const rateFor = (subscribers: number): number => Math.max(1, Math.round((FRAMES * SESSIONS) / subscribers));

// ---------------------------------------------------------------------------------------------
// Scenarios.

interface Setup {
  redis: SpawnedRedis;
  project: string;
  sessions: string[];
  backlog: string;
  producer: { child: Child; rpc: RpcClient<ProducerApi> };
  clients: { child: Child; rpc: RpcClient<SseClientsApi> }[];
  /** A client process with no live subscribers, for the catch-up measurements only. */
  catcher: { child: Child; rpc: RpcClient<SseClientsApi> };
}

const sessionPath = (s: Setup, session: string): string =>
  `/v1/projects/${s.project}/sessions/${session}/events`;

async function measureWindow(
  s: Setup,
  pids: Record<string, number[]>,
  marks: (() => Promise<unknown>)[],
): Promise<{ cpu: CpuWindow; fromUs: number; cmds0: number }> {
  await sleep(WARMUP_S * 1000);
  const cmds0 = await commandsProcessed();
  await Promise.all([s.producer.rpc.call("mark", null), ...marks.map((m) => m())]);
  return { cpu: new CpuWindow(pids), fromUs: nowUs(), cmds0 };
}

async function hubScenario(
  s: Setup,
  subscribers: number,
  profile: boolean,
  processes: number,
): Promise<{ result: Result; profile?: ProfileSummary }> {
  const gw = await startGateway(s.redis.url, profile, processes);
  await sleep(1000);
  const rssIdle = sumOver(gw.pids, rssBytes);
  const redisRss0 = rssBytes(s.redis.pid);

  const paths = Array.from({ length: subscribers }, (_, i) => sessionPath(s, s.sessions[i % SESSIONS] ?? ""));
  const parts = split(paths, s.clients.length);
  const setupCpu0 = sumOver(gw.pids, cpuSeconds);
  const t0 = performance.now();
  const opens = await Promise.all(
    s.clients.map((c, j) =>
      c.rpc.call(
        "open",
        { port: gw.port, paths: parts[j] ?? [], concurrency: OPEN_CONCURRENCY, timeoutMs: 60_000 },
        240_000,
      ),
    ),
  );
  const setupMs = performance.now() - t0;
  const setupCpu1 = sumOver(gw.pids, cpuSeconds);
  const connected = opens.reduce((n, o) => n + o.opened, 0);
  const openFailed = opens.reduce((n, o) => n + o.failed, 0);
  if (openFailed > 0) {
    log(
      `  ${openFailed} connections failed to open: ${[...new Set(opens.flatMap((o) => o.errors))].join("; ")}`,
    );
  }
  const health = await api<{ channels: { sse: number } }>(gw.base, "GET", "/v1/healthz");
  log(
    `  ${fmtInt(connected)} SSE subscribers live in ${(setupMs / 1000).toFixed(1)} s ` +
      `(${processes > 1 ? "the gateway process that answered /v1/healthz" : "gateway"} counts ${fmtInt(health.channels.sse)})`,
  );
  await sleep(2000);
  const rssConnected = sumOver(gw.pids, rssBytes);
  const redisRss1 = rssBytes(s.redis.pid);

  const rate = rateFor(subscribers);
  await s.producer.rpc.call("rate", { sessions: s.sessions, eventsPerSec: rate });
  log(
    `  producing ${fmtInt(rate)} events/s over ${SESSIONS} sessions; warm-up ${WARMUP_S} s, window ${SECONDS} s`,
  );
  const w = await measureWindow(
    s,
    {
      gateway: gw.pids,
      redis: [s.redis.pid],
      clients: s.clients.map((c) => c.child.pid),
      producer: [s.producer.child.pid],
    },
    s.clients.map((c) => () => c.rpc.call("mark", null)),
  );
  // Socket queues sampled at 4 points inside the window (reading /proc/net/tcp is cheap but not free).
  const hubs = await hubClients();
  const samples: QueueSample[] = [];
  const windowEnd = performance.now() + SECONDS * 1000;
  for (let k = 1; k <= 4; k++) {
    await sleep(Math.max(0, windowEnd - performance.now() - ((5 - k) * SECONDS * 1000) / 5));
    const q = sampleQueues(
      gw.port,
      hubs.map((h) => h.port),
      s.redis.port,
    );
    if (q) samples.push(q);
  }
  await sleep(Math.max(0, windowEnd - performance.now()));
  const cpu = w.cpu.end();
  const toUs = nowUs();
  const [cmds1, hubsAfter] = await Promise.all([commandsProcessed(), hubClients()]);
  const hubOmem = hubsAfter.length > 0 ? Math.max(...hubsAfter.map((h) => h.omem)) : undefined;
  const queues = averageQueues(samples);
  log(
    `  queued (window average): gateway unread from Redis ${fmtKiB(queues?.hubUnread ?? Number.NaN)}, ` +
      `clients unread ${fmtKiB(queues?.clientsUnread ?? Number.NaN)} on ` +
      `${fmtInt(queues?.clientsBacklogged ?? Number.NaN)} sockets, gateway send queues ` +
      `${fmtKiB(queues?.gatewayUnsent ?? Number.NaN)}; Redis omem for the hub at the end ` +
      `${fmtKiB(hubOmem ?? Number.NaN)}`,
  );
  const [prod, ...reports] = await Promise.all([
    s.producer.rpc.call("report", null),
    ...s.clients.map((c) => c.rpc.call("report", null)),
  ]);
  const rssLoaded = sumOver(gw.pids, rssBytes);

  let catchup: Result["catchup"];
  if (CATCHUP > 0) {
    try {
      const cu = await s.catcher.rpc.call(
        "catchup",
        { port: gw.port, path: sessionPath(s, s.backlog), expect: CATCHUP, timeoutMs: CATCHUP_TIMEOUT_MS },
        CATCHUP_TIMEOUT_MS + 10_000,
      );
      if (cu && (cu.frames !== CATCHUP || !cu.inOrder)) {
        throw new BenchAbort(`catch-up received ${cu.frames}/${CATCHUP} frames (in order: ${cu.inOrder})`);
      }
      if (cu) {
        log(
          `  catch-up under load: connect ${fmtMs(cu.connectMs)}, head ${fmtMs(cu.headMs)}, ` +
            `first ${fmtMs(cu.firstMs)}, last ${fmtMs(cu.lastMs)}`,
        );
      }
      catchup = cu;
    } catch (err) {
      if (err instanceof BenchAbort) throw err;
      log(`  catch-up under load did not complete: ${errorMessage(err).split("\n")[0]}`);
      catchup = { failed: `not done in ${CATCHUP_TIMEOUT_MS / 1000} s` };
    }
  }
  await s.producer.rpc.call("rate", { sessions: s.sessions, eventsPerSec: 0 });
  await s.producer.rpc.call("drain", null);
  await Promise.all(s.clients.map((c) => c.rpc.call("closeAll", null)));
  await gw.child.stop();

  const merged = mergeReports(reports);
  const eventsPerSec = prod.produced / prod.seconds;
  const sizes = wireSizes(s);
  const append = new Histogram();
  append.add(prod.append);
  if (openFailed) merged.anomalies.unshift(`${openFailed} failed to connect`);
  if (prod.failed) merged.anomalies.push(`${prod.failed} appends failed (${prod.firstError})`);
  if (prod.skipped) merged.anomalies.push(`producer behind: ${fmtInt(prod.skipped)} events skipped`);
  if (hubOmem) merged.anomalies.push(`hub connection ${fmtKiB(hubOmem)} behind at Redis`);
  const result: Result = {
    design: "hub",
    processes,
    subscribers,
    connected,
    eventsPerSec,
    framesPerSec: merged.framesPerSec,
    expectedFramesPerSec: (eventsPerSec * connected) / SESSIONS,
    latency: merged.latency,
    cpu: cpu.cores,
    machine: cpu.machine,
    redisCmdsPerSec: (cmds1 - w.cmds0) / cpu.seconds,
    rssIdle,
    rssConnected,
    rssLoaded,
    redisRssDelta:
      redisRss0 !== undefined && redisRss1 !== undefined ? (redisRss1 - redisRss0) / connected : undefined,
    setupMs,
    setupServerCpu:
      setupCpu0 !== undefined && setupCpu1 !== undefined
        ? (setupCpu1 - setupCpu0) / (setupMs / 1000)
        : undefined,
    catchup,
    queuedMs: queues && {
      gatewayIn:
        queues.hubUnread === undefined ? undefined : (queues.hubUnread / sizes.message / eventsPerSec) * 1000,
      clientsIn: (queues.clientsUnread / sizes.frame / merged.framesPerSec) * 1000,
    },
    anomalies: merged.anomalies,
    appendP99Ms: append.percentileMs(99),
  };
  let summary: ProfileSummary | undefined;
  if (gw.profileFile) {
    try {
      summary = summarizeProfile(gw.profileFile, w.fromUs, toUs);
    } catch (err) {
      log(`  could not read the gateway CPU profile: ${errorMessage(err)}`);
    }
  }
  return summary ? { result, profile: summary } : { result };
}

async function naiveScenario(s: Setup, subscribers: number): Promise<Result> {
  const keys = createKeys(PREFIX);
  const naive = startWorker<NaiveClientsApi>("naive readers", "bench/stream/naive-clients.ts");
  try {
    await sleep(1000);
    const rssIdle = rssBytes(naive.child.pid);
    const redisRss0 = rssBytes(s.redis.pid);
    const streamKeys = Array.from({ length: subscribers }, (_, i) =>
      keys.stream(DEFAULT_ORG, s.project, s.sessions[i % SESSIONS] ?? ""),
    );
    const cpu0 = cpuSeconds(naive.child.pid);
    const t0 = performance.now();
    const open = await naive.rpc.call(
      "open",
      { redisUrl: s.redis.url, keys: streamKeys, concurrency: OPEN_CONCURRENCY, timeoutMs: 120_000 },
      180_000,
    );
    const setupMs = performance.now() - t0;
    const cpu1 = cpuSeconds(naive.child.pid);
    if (open.failed > 0) log(`  ${open.failed} connections failed: ${open.errors.join("; ")}`);
    // Every reader is parked in XREAD BLOCK before the producer starts.
    const deadline = Date.now() + 30_000;
    let blocked = 0;
    while (Date.now() < deadline) {
      blocked = Number((await redisInfo("clients")).get("blocked_clients") ?? 0);
      if (blocked >= open.opened) break;
      await sleep(200);
    }
    log(
      `  ${fmtInt(open.opened)} readers connected in ${(setupMs / 1000).toFixed(1)} s, ${fmtInt(blocked)} blocked`,
    );
    await sleep(1000);
    const rssConnected = rssBytes(naive.child.pid);
    const redisRss1 = rssBytes(s.redis.pid);

    const rate = rateFor(subscribers);
    await s.producer.rpc.call("rate", { sessions: s.sessions, eventsPerSec: rate });
    log(
      `  producing ${fmtInt(rate)} events/s over ${SESSIONS} sessions; warm-up ${WARMUP_S} s, window ${SECONDS} s`,
    );
    const w = await measureWindow(
      s,
      { gateway: [naive.child.pid], redis: [s.redis.pid], clients: [], producer: [s.producer.child.pid] },
      [() => naive.rpc.call("mark", null)],
    );
    await sleep(SECONDS * 1000);
    const cpu = w.cpu.end();
    const cmds1 = await commandsProcessed();
    const [prod, report] = await Promise.all([
      s.producer.rpc.call("report", null),
      naive.rpc.call("report", null, 120_000),
    ]);
    const rssLoaded = rssBytes(naive.child.pid);
    await s.producer.rpc.call("rate", { sessions: s.sessions, eventsPerSec: 0 });
    await s.producer.rpc.call("drain", null);
    await naive.rpc.call("closeAll", null, 120_000);

    const merged = mergeReports([report]);
    const eventsPerSec = prod.produced / prod.seconds;
    const append = new Histogram();
    append.add(prod.append);
    if (open.failed) merged.anomalies.unshift(`${open.failed} failed to connect`);
    if (prod.failed) merged.anomalies.push(`${prod.failed} appends failed (${prod.firstError})`);
    if (prod.skipped) merged.anomalies.push(`producer behind: ${fmtInt(prod.skipped)} events skipped`);
    return {
      design: "naive",
      processes: 1,
      subscribers,
      connected: open.opened,
      eventsPerSec,
      framesPerSec: merged.framesPerSec,
      expectedFramesPerSec: (eventsPerSec * open.opened) / SESSIONS,
      latency: merged.latency,
      cpu: { ...cpu.cores, clients: undefined },
      machine: cpu.machine,
      redisCmdsPerSec: (cmds1 - w.cmds0) / cpu.seconds,
      rssIdle,
      rssConnected,
      rssLoaded,
      redisRssDelta:
        redisRss0 !== undefined && redisRss1 !== undefined
          ? (redisRss1 - redisRss0) / open.opened
          : undefined,
      setupMs,
      setupServerCpu: cpu0 !== undefined && cpu1 !== undefined ? (cpu1 - cpu0) / (setupMs / 1000) : undefined,
      catchup: undefined,
      queuedMs: undefined,
      anomalies: merged.anomalies,
      appendP99Ms: append.percentileMs(99),
    };
  } finally {
    await naive.child.stop(15_000);
  }
}

// ---------------------------------------------------------------------------------------------
// Output.

const designName = (r: Result): string =>
  r.design === "hub"
    ? `hub: SSE gateway, ${r.processes} process${r.processes === 1 ? "" : "es"}`
    : "naive: XREAD BLOCK per subscriber";

const subsCell = (r: Result): string =>
  r.connected === r.subscribers
    ? fmtInt(r.subscribers)
    : `${fmtInt(r.connected)} of ${fmtInt(r.subscribers)}`;

/** Cores used during the window by processes the bench did not start. */
function othersCores(r: Result): number | undefined {
  if (r.machine === undefined) return undefined;
  const ours = Object.values(r.cpu).reduce<number>((sum, c) => sum + (c ?? 0), 0);
  return Math.max(0, r.machine * cpus().length - ours);
}

function fanoutTable(results: Result[]): Table {
  return {
    title: "Live fan-out: append → client receipt",
    headers: [
      "design",
      "subscribers",
      "events/s",
      "frames/s (expected)",
      "p50",
      "p99",
      "max",
      "server CPU",
      "Redis CPU",
      "Redis cmds/s",
      "clients CPU",
      "producer CPU",
      "machine busy",
      "other processes",
    ],
    rows: results.map((r) => [
      designName(r),
      subsCell(r),
      fmtInt(r.eventsPerSec),
      `${fmtInt(r.framesPerSec)} (${fmtInt(r.expectedFramesPerSec)})`,
      fmtMs(r.latency.percentileMs(50)),
      fmtMs(r.latency.percentileMs(99)),
      fmtMs(r.latency.maxMs),
      fmtCores(r.cpu.gateway),
      fmtCores(r.cpu.redis),
      fmtInt(r.redisCmdsPerSec),
      r.design === "hub" ? fmtCores(r.cpu.clients) : "–",
      fmtCores(r.cpu.producer),
      r.machine === undefined ? "n/a" : `${Math.round(r.machine * 100)} %`,
      fmtCores(othersCores(r)),
    ]),
    notes: [
      "server = the gateway (hub: all its processes, with N > 1 the node:cluster primary too) or the process " +
        "holding one Redis connection per subscriber (naive, no HTTP)",
      "CPU in % of one core over the measurement window; machine busy = all cores together (100 % = every core " +
        "busy); other processes = CPU used by processes outside the bench in the window (noise)",
      "frames/s (expected) = events/s produced × subscribers per session",
    ],
  };
}

function resourcesTable(results: Result[]): Table {
  const perSub = (r: Result): string =>
    r.rssConnected !== undefined && r.rssIdle !== undefined
      ? fmtKiB((r.rssConnected - r.rssIdle) / r.connected)
      : "n/a";
  return {
    title: "Memory, connection setup, catch-up",
    headers: [
      "design",
      "subscribers",
      "server RSS idle / connected / loaded",
      "server RSS per sub",
      "Redis RSS per sub",
      "setup (subs/s, server CPU)",
      `catch-up ${fmtInt(CATCHUP)} behind (head / first / last)`,
      "µs server CPU per frame",
      "queued: gateway in / clients in",
      "append p99",
      "anomalies",
    ],
    rows: results.map((r) => [
      designName(r),
      subsCell(r),
      `${fmtMiB(r.rssIdle)} / ${fmtMiB(r.rssConnected)} / ${fmtMiB(r.rssLoaded)}`,
      perSub(r),
      r.redisRssDelta === undefined ? "n/a" : fmtKiB(r.redisRssDelta),
      `${fmtInt(r.connected / (r.setupMs / 1000))}/s, ${fmtCores(r.setupServerCpu)}`,
      r.catchup === undefined
        ? "–"
        : "failed" in r.catchup
          ? r.catchup.failed
          : `${fmtMs(r.catchup.headMs)} / ${fmtMs(r.catchup.firstMs)} / ${fmtMs(r.catchup.lastMs)}`,
      r.cpu.gateway === undefined || r.framesPerSec === 0
        ? "n/a"
        : ((r.cpu.gateway * 1e6) / r.framesPerSec).toFixed(1),
      r.queuedMs
        ? `≈ ${r.queuedMs.gatewayIn === undefined ? "n/a" : fmtMs(r.queuedMs.gatewayIn)} / ${fmtMs(r.queuedMs.clientsIn)}`
        : "–",
      fmtMs(r.appendP99Ms),
      r.anomalies.length ? r.anomalies.join(", ") : "none",
    ]),
    notes: [
      "RSS per sub = (connected − idle) / subscribers, both read with no traffic; loaded = at the end of the window",
      "queued = average unread bytes in the kernel socket queues during the window (/proc/net/tcp), as ms of " +
        "traffic: the gateway's pub/sub input from Redis, and the SSE sockets' client ends (hub only)",
      "append p99 = round trip of the producer's `EventLog.append` call (the XADD + PUBLISH script)",
      "catch-up (hub only) = a new client with `?after=0` on a session holding the backlog, measured right " +
        "after the window while the traffic goes on, from a separate client process with no other connection: " +
        `ms to the response head, to the first frame and to the last frame (given up after ${CATCHUP_TIMEOUT_MS / 1000} s)`,
    ],
  };
}

function profileTable(subscribers: number, p: ProfileSummary): Table {
  return {
    title: `Gateway main thread during the ${fmtInt(subscribers)}-subscriber window (--cpu-prof)`,
    headers: ["where", "share of busy time"],
    rows: [
      ...p.categories.map((c) => [c.name, `${(c.share * 100).toFixed(1)} %`]),
      ["", ""],
      ...p.top.map((t) => [`self: ${t.name}`, `${(t.share * 100).toFixed(1)} %`]),
    ],
    notes: [
      `${fmtInt(p.samples)} samples over ${(p.windowMs / 1000).toFixed(1)} s; the main thread was idle ` +
        `${(p.idle * 100).toFixed(1)} % of it. Each busy sample is attributed to its innermost categorized ` +
        "frame (self: the leaf function). A profiled extra run, not in the tables above",
      "samples are taken on wall time: on saturated cores, time the thread waited for a CPU is counted " +
        "against whatever it was running",
    ],
  };
}

function verdict(results: Result[]): string {
  const hubs = results.filter((r) => r.design === "hub");
  const biggest = Math.max(0, ...hubs.map((r) => r.connected));
  const top = hubs.filter((r) => r.connected === biggest);
  if (top.length === 0) return "Goal not evaluated (no hub scenario ran).";
  const lines = top.map((hub) => {
    const p99 = hub.latency.percentileMs(99);
    const checks = [
      [`${fmtInt(hub.connected)} subscribers`, hub.connected >= GOAL.subscribers],
      [`${fmtInt(hub.framesPerSec)} frames/s`, hub.framesPerSec >= GOAL.frames * 0.98],
      [`p99 ${fmtMs(p99)}`, p99 <= GOAL.p99Ms],
    ] as const;
    const met = checks.every(([, ok]) => ok);
    return `${hub.processes} gateway process${hub.processes === 1 ? "" : "es"}: ${met ? "met" : "NOT met"} — ${checks
      .map(([what, ok]) => `${what} ${ok ? "✓" : "✗"}`)
      .join(", ")}`;
  });
  return (
    `Goal (${fmtInt(GOAL.subscribers)} SSE subscribers on one gateway, ${fmtInt(GOAL.frames)} frames/s, ` +
    `p99 ≤ ${GOAL.p99Ms} ms): ${lines.join("; ")}.`
  );
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const env = environment();
  const load0 = loadavg().map((x) => x.toFixed(2));
  log(env);
  log(
    `load average at start: ${load0.join(" ")}; open files: ${limit ? `${limit.soft} / ${limit.hard}` : "n/a"}`,
  );
  const limitNotes: string[] = [];
  const scenarios = SCENARIOS.map((n) => {
    const m = reachable(n);
    if (m < n) limitNotes.push(`${fmtInt(n)} subscribers capped to ${fmtInt(m)} by the open-file hard limit`);
    return m;
  }).filter((n) => n > 0);
  const naives = NAIVE.map((n) => {
    const m = reachable(n);
    if (m < n) limitNotes.push(`naive ${fmtInt(n)} capped to ${fmtInt(m)} by the open-file hard limit`);
    return m;
  }).filter((n) => n > 0);
  for (const note of limitNotes) log(note);

  const maxNaive = Math.max(0, ...naives);
  const maxclients = Math.max(10_000, maxNaive + 1000);
  res.redis = await spawnRedis({ extraArgs: ["--maxclients", String(maxclients)] });
  res.cmd = await connectRedis(res.redis.url, "command", "bench-stream");
  log(`redis-server at ${res.redis.url} (pid ${res.redis.pid}, maxclients ${maxclients})`);

  // Project, sessions and the catch-up backlog, through a first gateway.
  const producer = startWorker<ProducerApi>("producer", "bench/stream/producer.ts");
  const clients = Array.from({ length: CLIENT_PROCS }, (_, j) =>
    startWorker<SseClientsApi>(`sse clients ${j + 1}`, "bench/stream/sse-clients.ts"),
  );
  const catcher = startWorker<SseClientsApi>("catch-up client", "bench/stream/sse-clients.ts");
  const gw = await startGateway(res.redis.url, false);
  const project = (await api<{ id: string }>(gw.base, "POST", "/v1/projects", { name: "bench stream" })).id;
  const sessions: string[] = [];
  for (let i = 0; i < SESSIONS; i++) {
    sessions.push((await api<{ id: string }>(gw.base, "POST", `/v1/projects/${project}/sessions`)).id);
  }
  const backlog = (await api<{ id: string }>(gw.base, "POST", `/v1/projects/${project}/sessions`)).id;
  await producer.rpc.call("init", {
    redisUrl: res.redis.url,
    prefix: PREFIX,
    org: DEFAULT_ORG,
    project,
    maxLen: MAX_LEN,
  });
  const setup: Setup = { redis: res.redis, project, sessions, backlog, producer, clients, catcher };
  let idleCatchup: string | undefined;
  if (CATCHUP > 0) {
    const fill = await producer.rpc.call("fill", { session: backlog, count: CATCHUP, batch: 100 }, 120_000);
    log(`backlog: ${fmtInt(CATCHUP)} events appended to one session in ${fmtMs(fill.ms)}`);
    const cu = await catcher.rpc.call(
      "catchup",
      { port: gw.port, path: sessionPath(setup, backlog), expect: CATCHUP, timeoutMs: 60_000 },
      90_000,
    );
    if (cu) {
      if (cu.frames !== CATCHUP || !cu.inOrder) throw new Error(`idle catch-up received ${cu.frames} frames`);
      idleCatchup = `${fmtMs(cu.headMs)} / ${fmtMs(cu.firstMs)} / ${fmtMs(cu.lastMs)}`;
      log(`catch-up of ${fmtInt(CATCHUP)} events on an idle gateway: head / first / last ${idleCatchup}`);
    }
  }
  await gw.child.stop();

  const results: Result[] = [];
  for (const processes of PROCESSES) {
    for (const n of scenarios) {
      log(`hub: ${fmtInt(n)} SSE subscribers on one gateway of ${processes} process(es) …`);
      const { result } = await hubScenario(setup, n, false, processes);
      results.push(result);
      log(
        `  ${fmtInt(result.framesPerSec)} frames/s, p50 ${fmtMs(result.latency.percentileMs(50))}, ` +
          `p99 ${fmtMs(result.latency.percentileMs(99))}, gateway ${fmtCores(result.cpu.gateway)}`,
      );
    }
  }
  let profiled: { subscribers: number; summary: ProfileSummary } | undefined;
  if (PROFILE > 0) {
    const n = reachable(PROFILE);
    // One process: its profile is the per-process anatomy whatever the number of processes.
    log(`hub, profiled extra run: ${fmtInt(n)} subscribers, one gateway process with --cpu-prof …`);
    const { result, profile } = await hubScenario(setup, n, true, 1);
    log(
      `  (profiled) ${fmtInt(result.framesPerSec)} frames/s, p99 ${fmtMs(result.latency.percentileMs(99))}, ` +
        `gateway ${fmtCores(result.cpu.gateway)}`,
    );
    if (profile) profiled = { subscribers: n, summary: profile };
  }
  // The SSE client processes are idle from here on; they would only add noise.
  await Promise.all([...clients, catcher].map((c) => c.child.stop(5000)));
  for (const n of naives) {
    log(`naive: ${fmtInt(n)} subscribers, one XREAD BLOCK connection each …`);
    const result = await naiveScenario(setup, n);
    results.push(result);
    log(
      `  ${fmtInt(result.framesPerSec)} frames/s of ${fmtInt(result.expectedFramesPerSec)}, ` +
        `p50 ${fmtMs(result.latency.percentileMs(50))}, p99 ${fmtMs(result.latency.percentileMs(99))}, ` +
        `readers ${fmtCores(result.cpu.gateway)}, Redis ${fmtCores(result.cpu.redis)}`,
    );
  }

  const load1 = loadavg().map((x) => x.toFixed(2));
  const date = new Date().toISOString().slice(0, 10);
  const tables = [fanoutTable(results), resourcesTable(results)];
  if (profiled) tables.push(profileTable(profiled.subscribers, profiled.summary));
  const eventBytes = Buffer.byteLength(benchEvent(12345, nowUs()));
  const context = [
    verdict(results),
    "",
    `Setup: ${SESSIONS} sessions, subscribers spread evenly over them; the producer appends one event per ` +
      `\`EventLog.append\` call round-robin over the sessions at ${fmtInt(FRAMES)} × sessions / subscribers ` +
      `events/s, so every scenario aims at ${fmtInt(FRAMES)} frames/s delivered. Events are ${eventBytes}-byte ` +
      `\`message_update\` text deltas. ${CLIENT_PROCS} SSE client processes; a fresh gateway per scenario, ` +
      `of ${PROCESSES.join(" or ")} process(es) (\`PI_FLEET_GATEWAY_PROCESSES\`); ` +
      `${WARMUP_S} s warm-up, then a ${SECONDS} s window.`,
    ...(idleCatchup
      ? [
          "",
          `Catch-up of ${fmtInt(CATCHUP)} events on an idle gateway (head / first / last frame): ${idleCatchup}.`,
        ]
      : []),
    ...(limitNotes.length ? ["", `Limits: ${limitNotes.join("; ")}.`] : []),
    "",
    `Environment: ${env}; open files ${limit ? `${limit.soft} / ${limit.hard}` : "n/a"}; load average ` +
      `${load0.join(" ")} at start, ${load1.join(" ")} at the end. Everything (Redis, gateway, producer, clients) ` +
      "shares the same cores.",
  ];
  const md = [
    `Live fan-out of session streams (\`npm run bench:stream\`${PROFILE > 0 ? `, \`BENCH_STREAM_PROFILE=${PROFILE}\`` : ""}, ${date}).`,
    "",
    ...context,
    "",
    tables.map(markdownTable).join("\n\n"),
    "",
  ].join("\n");
  process.stdout.write(
    `\n${tables.map(textTable).join("\n\n")}\n\n${context.join("\n")}\n\nMarkdown (for bench/README.md):\n\n${md}\n`,
  );
  await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
  await writeFile(RESULTS_FILE, `# Stream fan-out\n\n${md}`);
  log(`wrote ${RESULTS_FILE}`);
}

const timer = setTimeout(
  () =>
    fail(new BenchAbort(`bench did not finish within ${TIMEOUT_MS / 1000} s (BENCH_TIMEOUT_MS); aborting`)),
  TIMEOUT_MS,
);
let exitCode = 0;
try {
  const run = main();
  run.catch(() => {});
  await Promise.race([run, failed]);
} catch (err) {
  exitCode = 1;
  const detail = err instanceof BenchAbort ? err.message : err instanceof Error ? err.stack : String(err);
  process.stderr.write(`\nbench failed: ${detail}\n`);
  if (lastChildTail && lastChildTail.lines.length > 0) {
    process.stderr.write(`\nlast output of ${lastChildTail.name}:\n${lastChildTail.lines.join("\n")}\n`);
  }
} finally {
  clearTimeout(timer);
  await cleanup();
}
process.exit(exitCode);
