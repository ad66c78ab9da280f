/**
 * `npm run bench:fleet`: latency, throughput and failover of a multi-process pi-fleet.
 *
 * The bench starts a private redis-server, the fake LLM (in this process), one gateway
 * (`apps/gateway/src/main.ts`) and two workers (`apps/worker/src/main.ts`) as separate child
 * processes on loopback, then measures:
 *
 * 1. cold dispatch: POST …/prompt to a project no worker owns → `run_started` at an SSE client
 *    (a fresh project per sample, deleted afterwards);
 * 2. warm dispatch: the same on an owned project (one session, sequential runs);
 * 3. control round trip: `POST …/commands {type: "get_state"}` on an owned project, at the HTTP client;
 * 4. prompt → first text delta at the SSE client (the warm runs) vs an in-process pi session;
 * 5. runs/s for short runs with 1 worker and with 2 workers;
 * 6. failover after SIGKILL of the worker owning a project with a long run and a queued run;
 * 7. handoff after SIGTERM of such a worker.
 *
 * Every client-side clock is `process.hrtime.bigint()` — the machine-wide monotonic clock the
 * gateway also uses for `RunJobData.enqueuedAtNs` — so stamps of this process and the gateway
 * compare. A `MONITOR`-based trace (bench/fleet/trace.ts) shows where the time goes.
 * See bench/README.md for the knobs and caveats.
 */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_ORG, type WireEvent } from "@pi-fleet/contracts";
import { parseLeaseToken } from "@pi-fleet/leases";
import { openSession, type PiSession, preparePiProcess, RuntimeCache } from "@pi-fleet/pi-runtime";
import { connectRedis, createKeys, type Redis } from "@pi-fleet/redis";
import { type FakeLlm, findFreePort, type SpawnedRedis, spawnRedis, startFakeLlm } from "@pi-fleet/testkit";
import { type Child, setUnexpectedExitHandler, spawnNode, stopAll } from "./fleet/children.ts";
import { CpuMeter } from "./fleet/cpu.ts";
import { api, closeHttp, send } from "./fleet/http.ts";
import { isTextDelta, openStream, type SseStream, type StampedEvent } from "./fleet/sse.ts";
import { RedisTracer, type Step, summarize } from "./fleet/trace.ts";
import {
  BenchAbort,
  environment,
  intFromEnv,
  isRecord,
  log,
  median,
  ms,
  msBetween,
  nowNs,
  pollUntil,
  ratio,
  type Stats,
  seconds,
  signedMs,
  sleep,
  stats,
  withTimeout,
} from "./fleet/util.ts";
import { markdownTable, type Table, textTable } from "./lib/table.ts";

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "fleet.md");
const PREFIX = "bench";
const PROVIDER = "fake";
const MODEL_ID = "fake-model";
const API_KEY = "sk-bench";
const LEASE_TTL_MS = 3000; // pi-fleet's default PI_FLEET_LEASE_TTL_MS; the bench does not override it
/** Per-event wait before the bench gives up. */
const STEP_MS = 30_000;
const TERMINAL = new Set(["run_finished", "run_failed", "run_aborted", "run_interrupted", "run_cancelled"]);

const COLD = intFromEnv("BENCH_COLD_SAMPLES", 100, 1);
const COLD_WARMUP = intFromEnv("BENCH_COLD_WARMUP", 10, 0);
const WARM = intFromEnv("BENCH_WARM_SAMPLES", 200, 1);
const WARMUP = intFromEnv("BENCH_WARMUP", 20, 0);
const CONTROL = intFromEnv("BENCH_CONTROL_SAMPLES", 300, 1);
const TP_RUNS = intFromEnv("BENCH_TP_RUNS", 400, 1);
const TP_PROJECTS = intFromEnv("BENCH_TP_PROJECTS", 20, 1);
const TP_SESSIONS = intFromEnv("BENCH_TP_SESSIONS", 2, 1);
const TP_CONCURRENCY = intFromEnv("BENCH_TP_CONCURRENCY", 64, 1);
const REPEATS = intFromEnv("BENCH_FAILOVER_REPEATS", 3, 1);
const TRACE = intFromEnv("BENCH_TRACE_SAMPLES", 20, 0);
const TRACE_RAW = intFromEnv("BENCH_TRACE_RAW", 0, 0) > 0;
const GAP_MS = intFromEnv("BENCH_GAP_MS", 0, 0);
const DRAIN_MS = intFromEnv("BENCH_DRAIN_MS", 0, 0);
const TIMEOUT_MS = intFromEnv("BENCH_TIMEOUT_MS", 900_000, 1000);

const keys = createKeys(PREFIX);
const pad = (n: number, width = 3): string => String(n).padStart(width, "0");

// ---------------------------------------------------------------------------------------------
// Everything the bench started, torn down by cleanup() whatever happened.

interface WorkerProc {
  id: string;
  child: Child;
}

interface Resources {
  redis?: SpawnedRedis;
  llm?: FakeLlm;
  client?: Redis;
  tracer?: RedisTracer;
  session?: PiSession;
  streams: Set<SseStream>;
  dirs: string[];
}

const res: Resources = { streams: new Set(), dirs: [] };
const workers: WorkerProc[] = [];
let gateway: Child | undefined;
let workerSeq = 0;
let loadAtStart = "";

let fail: (err: Error) => void = () => {};
const failed = new Promise<never>((_, reject) => {
  fail = reject;
});
failed.catch(() => {});
setUnexpectedExitHandler((child, code, signal) =>
  fail(new BenchAbort(`${child.name} exited unexpectedly (code ${code}, signal ${signal})`)),
);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => fail(new BenchAbort(`interrupted by ${signal}`)));
}

async function step(what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    log(`cleanup: ${what} failed: ${(err as Error).message}`);
  }
}

async function cleanup(): Promise<void> {
  for (const s of res.streams) s.close();
  const { session, tracer, client, llm, redis } = res;
  if (session) await step("disposing the in-process session", () => session.dispose());
  if (tracer) await step("stopping the tracer", () => tracer.stop());
  await step("stopping pi-fleet processes", () => stopAll(20_000));
  closeHttp();
  if (client) client.disconnect();
  if (llm) await step("closing the fake LLM", () => llm.close());
  if (redis) await step("stopping redis-server", () => redis.stop());
  for (const dir of res.dirs) await step(`removing ${dir}`, () => rm(dir, { recursive: true, force: true }));
}

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  res.dirs.push(dir);
  return dir;
}

// ---------------------------------------------------------------------------------------------
// The fleet: one gateway, N workers, all child processes.

let baseEnv: NodeJS.ProcessEnv = {};
let base = "";

async function httpReady(url: string): Promise<true | undefined> {
  try {
    return (await send(url, "GET", "", undefined, 2000)).status === 200 ? true : undefined;
  } catch {
    return undefined;
  }
}

async function startGateway(): Promise<void> {
  const port = await findFreePort();
  gateway = spawnNode("gateway", "apps/gateway/src/main.ts", REPO_ROOT, { ...baseEnv, PORT: String(port) });
  base = `http://127.0.0.1:${port}`;
  await pollUntil(() => httpReady(`${base}/v1/readyz`), 60_000, "the gateway's /v1/readyz", 100);
}

async function startWorker(): Promise<WorkerProc> {
  const id = `w${++workerSeq}`;
  const port = await findFreePort();
  const child = spawnNode(id, "apps/worker/src/main.ts", REPO_ROOT, {
    ...baseEnv,
    PI_FLEET_WORKER_ID: id,
    PI_FLEET_WORKER_PORT: String(port),
    PI_FLEET_IDLE_RELEASE_MS: String(3_600_000),
    PI_FLEET_DRAIN_TIMEOUT_MS: String(DRAIN_MS),
  });
  await pollUntil(() => httpReady(`http://127.0.0.1:${port}/readyz`), 60_000, `${id}'s /readyz`, 100);
  const worker = { id, child };
  workers.push(worker);
  return worker;
}

function dropWorker(id: string): void {
  const i = workers.findIndex((w) => w.id === id);
  if (i >= 0) workers.splice(i, 1);
}

function workerById(id: string): WorkerProc {
  const w = workers.find((x) => x.id === id);
  if (!w) throw new Error(`no live worker ${id}`);
  return w;
}

// ---------------------------------------------------------------------------------------------
// Sessions, prompts and the stamps of one run.

interface SessionHandle {
  project: string;
  session: string;
  path: string;
  sse: SseStream;
}

async function newSession(project: string, existing = false): Promise<SessionHandle> {
  if (!existing) await api(base, "POST", "/v1/projects", { name: project });
  const s = await api<{ id: string }>(base, "POST", `/v1/projects/${project}/sessions`, {
    provider: PROVIDER,
    modelId: MODEL_ID,
  });
  const path = `/v1/projects/${project}/sessions/${s.id}`;
  const sse = await openStream(`${base}${path}/events`);
  res.streams.add(sse);
  return { project, session: s.id, path, sse };
}

function closeSession(h: SessionHandle): void {
  h.sse.close();
  res.streams.delete(h.sse);
}

/** Deletes a project (its owner releases it) and waits until its lease key is gone. */
async function deleteProject(project: string): Promise<void> {
  await api(base, "DELETE", `/v1/projects/${project}`);
  const client = res.client!;
  await pollUntil(
    async () => ((await client.exists(keys.lease(DEFAULT_ORG, project))) === 0 ? true : undefined),
    10_000,
    `the release of ${project}`,
    2,
  );
}

/** Stamps of one run on the shared monotonic clock. */
interface RunStamps {
  runId: string;
  t0: bigint;
  answeredAt: bigint;
  queuedAt: bigint;
  startedAt: bigint;
  firstDeltaAt: bigint | undefined;
  finishedAt: bigint;
  /** The gateway's stamp just before it added the job (`RunJobData.enqueuedAtNs`). */
  enqueuedAt: bigint | undefined;
  workerId: string;
  epoch: number;
}

async function enqueuedAtOf(project: string, runId: string): Promise<bigint | undefined> {
  const raw = await res.client!.hget(
    `${keys.queuePrefix}:${keys.projectTag(DEFAULT_ORG, project)}:${runId}`,
    "data",
  );
  if (!raw) return undefined;
  const data: unknown = JSON.parse(raw);
  return isRecord(data) && typeof data.enqueuedAtNs === "string" ? BigInt(data.enqueuedAtNs) : undefined;
}

/**
 * Sends a prompt (the clock starts just before the POST) and waits for the run's end. The run's
 * `run_started` is the first one on the session's stream after t0 (runs are sequential).
 */
async function promptRun(h: SessionHandle, text: string, beforeT0?: () => Promise<void>): Promise<RunStamps> {
  if (beforeT0) await beforeT0();
  const t0 = nowNs();
  const answerP = send(base, "POST", `${h.path}/prompt`, { text });
  answerP.catch(() => {});
  const started = await h.sse.waitFor((e) => e.atNs > t0 && e.type === "run_started", STEP_MS, "run_started");
  const answer = await answerP;
  if (answer.status !== 200) throw new Error(`POST ${h.path}/prompt → HTTP ${answer.status}: ${answer.text}`);
  const { runId } = JSON.parse(answer.text) as { runId: string };
  if (started.runId !== runId)
    throw new Error(`POST answered run ${runId} but ${started.runId} started first`);
  const end = await withDiagnosis(
    h.sse.waitFor((e) => e.runId === runId && TERMINAL.has(e.type), STEP_MS, "the run's end"),
    h,
    runId,
  );
  if (end.type !== "run_finished")
    throw new Error(`run ${runId} ended with ${end.type}: ${JSON.stringify(end.json)}`);
  const queued = h.sse.events.find((e) => e.runId === runId && e.type === "run_queued");
  const delta = h.sse.events.find((e) => e.atNs > t0 && e.atNs <= end.atNs && isTextDelta(e));
  return {
    runId,
    t0,
    answeredAt: answer.atNs,
    queuedAt: queued?.atNs ?? started.atNs,
    startedAt: started.atNs,
    firstDeltaAt: delta?.atNs,
    finishedAt: end.atNs,
    enqueuedAt: await enqueuedAtOf(h.project, runId),
    workerId: String(started.json.workerId),
    epoch: Number(started.json.epoch),
  };
}

/**
 * A run that does not end is a finding, not just a failed bench: the error then carries what
 * Redis knows about it (run record, session's open runs, lease, BullMQ job and queue state).
 */
async function diagnoseRun(h: SessionHandle, runId: string): Promise<string> {
  const client = res.client!;
  const tag = keys.projectTag(DEFAULT_ORG, h.project);
  const q = (suffix: string): string => `${keys.queuePrefix}:${tag}:${suffix}`;
  const d = (suffix: string): string => `${keys.queuePrefix}:dispatch:${suffix}`;
  const lines: string[] = [];
  const add = async (label: string, fn: () => Promise<unknown>): Promise<void> => {
    try {
      lines.push(`  ${label}: ${JSON.stringify(await fn())}`);
    } catch (err) {
      lines.push(`  ${label}: (failed: ${(err as Error).message})`);
    }
  };
  await add("run record", () => client.hgetall(keys.run(DEFAULT_ORG, h.project, runId)));
  await add("session open runs", () =>
    client.zrange(keys.sessionRuns(DEFAULT_ORG, h.project, h.session), "0", "-1"),
  );
  await add("lease", () => client.get(keys.lease(DEFAULT_ORG, h.project)));
  await add("run job", () => client.hgetall(q(runId)));
  await add("project queue wait/active", async () => [
    await client.lrange(q("wait"), 0, -1),
    await client.lrange(q("active"), 0, -1),
  ]);
  await add("project queue completed/failed has job", async () => [
    await client.zscore(q("completed"), runId),
    await client.zscore(q("failed"), runId),
  ]);
  await add("dispatch wait/active", async () => [
    await client.lrange(d("wait"), 0, -1),
    await client.lrange(d("active"), 0, -1),
  ]);
  await add("dispatch dedup key", () => client.get(d(`de:${DEFAULT_ORG}.${h.project}`)));
  return `state of run ${runId} (project ${h.project}, session ${h.session}):\n${lines.join("\n")}`;
}

async function withDiagnosis<T>(promise: Promise<T>, h: SessionHandle, runId: string): Promise<T> {
  try {
    return await promise;
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${await diagnoseRun(h, runId)}`);
  }
}

const sinceT0 = (runs: readonly RunStamps[], at: (r: RunStamps) => bigint | undefined): number[] =>
  runs.flatMap((r) => {
    const t = at(r);
    return t === undefined ? [] : [msBetween(r.t0, t)];
  });

function countBy<T>(items: readonly T[], key: (t: T) => string): string {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return [...counts.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k}: ${n}`)
    .join(", ");
}

// ---------------------------------------------------------------------------------------------
// 1. Cold dispatch.

async function coldSample(name: string, beforeT0?: () => Promise<void>): Promise<RunStamps> {
  const h = await newSession(name);
  try {
    return await promptRun(h, `[[reply:ok]] [[tag:${name}]]`, beforeT0);
  } finally {
    closeSession(h);
    await deleteProject(name);
    await sleep(20); // let the old owner finish closing its runner before the next sample
  }
}

async function benchCold(): Promise<RunStamps[]> {
  const samples: RunStamps[] = [];
  for (let i = 0; i < COLD_WARMUP + COLD; i++) {
    const s = await coldSample(`cold-${pad(i)}`);
    if (i >= COLD_WARMUP) samples.push(s);
  }
  return samples;
}

// ---------------------------------------------------------------------------------------------
// 2 + 4. Warm dispatch and prompt → first text delta (the same runs), and the in-process baseline.

async function benchWarm(h: SessionHandle): Promise<RunStamps[]> {
  const samples: RunStamps[] = [];
  for (let i = 0; i < WARMUP + WARM; i++) {
    if (GAP_MS > 0) await sleep(GAP_MS);
    const s = await promptRun(h, `[[reply:hello world]] [[tag:${i}]]`);
    if (s.firstDeltaAt === undefined) throw new Error(`warm run ${i} finished without a text delta`);
    if (i >= WARMUP) samples.push(s);
  }
  const owners = new Set(samples.map((s) => `${s.workerId}:${s.epoch}`));
  if (owners.size !== 1)
    throw new Error(`the warm project changed owner during the measurement: ${[...owners]}`);
  return samples;
}

async function benchInProcess(llm: FakeLlm): Promise<number[]> {
  const projectDir = await tempDir("pf-bench-project-");
  const agentDir = await tempDir("pf-bench-agent-");
  preparePiProcess(agentDir);
  const runtime = await new RuntimeCache().get({
    orgId: "bench",
    revision: "1",
    providers: [
      {
        provider: PROVIDER,
        baseUrl: llm.baseUrl,
        api: "openai-completions",
        apiKey: API_KEY,
        models: [{ id: MODEL_ID }],
      },
    ],
    builtinKeys: {},
  });
  const session = await openSession({
    runtime,
    projectDir,
    sessionFile: join(projectDir, "s.jsonl"),
    agentDir,
    model: { provider: PROVIDER, modelId: MODEL_ID },
  });
  res.session = session;
  const samples: number[] = [];
  for (let i = 0; i < WARMUP + WARM; i++) {
    let t1: bigint | undefined;
    const sink = (event: WireEvent): void => {
      if (t1 !== undefined || event.type !== "message_update") return;
      const inner = (event as { assistantMessageEvent?: unknown }).assistantMessageEvent;
      if (isRecord(inner) && inner.type === "text_delta") t1 = nowNs();
    };
    const t0 = nowNs();
    const outcome = await withTimeout(
      session.run(`[[reply:hello world]] [[tag:${i}]]`, {}, sink),
      STEP_MS,
      `in-process run ${i}`,
    );
    if (outcome.status !== "finished") throw new Error(`in-process run ${i} ended ${outcome.status}`);
    if (t1 === undefined) throw new Error(`in-process run ${i} finished without a text delta`);
    if (i >= WARMUP) samples.push(msBetween(t0, t1));
  }
  res.session = undefined;
  await session.dispose();
  return samples;
}

// ---------------------------------------------------------------------------------------------
// 3. Control round trip (with two floors: a route without Redis, and one with Redis but no worker).

interface ControlResult {
  command: number[];
  healthz: number[];
  project: number[];
  ping: number[];
}

async function timed(method: string, path: string, body?: unknown): Promise<number> {
  const t0 = nowNs();
  const answer = await send(base, method, path, body);
  if (answer.status !== 200) throw new Error(`${method} ${path} → HTTP ${answer.status}: ${answer.text}`);
  return msBetween(t0, answer.atNs);
}

async function benchControl(h: SessionHandle): Promise<ControlResult> {
  const out: ControlResult = { command: [], healthz: [], project: [], ping: [] };
  const client = res.client!;
  for (let i = 0; i < WARMUP + CONTROL; i++) {
    const t0 = nowNs();
    await client.ping();
    const ping = msBetween(t0, nowNs());
    const healthz = await timed("GET", "/v1/healthz");
    const project = await timed("GET", `/v1/projects/${h.project}`);
    const command = await timed("POST", `${h.path}/commands`, { type: "get_state" });
    if (i < WARMUP) continue;
    out.ping.push(ping);
    out.healthz.push(healthz);
    out.project.push(project);
    out.command.push(command);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Trace: the same paths under MONITOR, a few samples each.

interface TraceResult {
  title: string;
  samples: number;
  steps: Step[][];
}

const traceNeedles = (project: string): string[] => [
  project,
  ":dispatch",
  ":ctl:",
  "ctl-reply",
  ":providers",
  ":owned:",
];

function benchSteps(r: RunStamps): Step[] {
  const at = (what: string, t: bigint | undefined): Step[] =>
    t === undefined ? [] : [{ atMs: msBetween(r.t0, t), who: "bench (client)", what }];
  return [
    ...at("run_queued arrives on SSE", r.queuedAt),
    ...at("POST /prompt answered", r.answeredAt),
    ...at("run_started arrives on SSE", r.startedAt),
  ];
}

/** With BENCH_TRACE_RAW=1, every traced sample's steps go to stderr. */
function rawTrace(what: string, steps: Step[]): Step[] {
  if (TRACE_RAW) {
    const lines = [...steps]
      .sort((a, b) => a.atMs - b.atMs)
      .map((s) => `  ${s.atMs.toFixed(3).padStart(8)} ms  ${s.who}: ${s.what}`);
    process.stderr.write(`[trace] ${what}\n${lines.join("\n")}\n`);
  }
  return steps;
}

/** Lets the previous sample's tail (and its MONITOR backlog) pass, then sends the marker. */
async function settleThenMark(tracer: RedisTracer, tag: string): Promise<void> {
  await sleep(50);
  tracer.clear();
  await tracer.mark(tag);
}

async function benchTrace(warm: SessionHandle): Promise<TraceResult[]> {
  const tracer = await RedisTracer.start(res.redis!.url, REPO_ROOT);
  res.tracer = tracer;
  const cold: Step[][] = [];
  const warmSteps: Step[][] = [];
  const control: Step[][] = [];
  for (let i = 0; i < TRACE; i++) {
    const name = `tc-${pad(i)}`;
    const tag = `bench-mark-${name}`;
    const r = await coldSample(name, () => settleThenMark(tracer, tag));
    const steps = await tracer.timeline(tag, msBetween(r.t0, r.startedAt) + 0.5, traceNeedles(name));
    cold.push(rawTrace(name, [...steps, ...benchSteps(r)]));
    tracer.clear();
  }
  for (let i = 0; i < TRACE; i++) {
    const tag = `bench-mark-warm-${i}`;
    const r = await promptRun(warm, `[[reply:hello world]] [[tag:t${i}]]`, () => settleThenMark(tracer, tag));
    const steps = await tracer.timeline(tag, msBetween(r.t0, r.startedAt) + 0.5, traceNeedles(warm.project));
    warmSteps.push(rawTrace(`warm ${i}`, [...steps, ...benchSteps(r)]));
    tracer.clear();
  }
  for (let i = 0; i < TRACE; i++) {
    const tag = `bench-mark-ctl-${i}`;
    await settleThenMark(tracer, tag);
    const t0 = nowNs();
    const answer = await send(base, "POST", `${warm.path}/commands`, { type: "get_state" });
    const total = msBetween(t0, answer.atNs);
    const steps = await tracer.timeline(tag, total + 0.5, traceNeedles(warm.project));
    control.push(
      rawTrace(`control ${i}`, [
        ...steps,
        { atMs: total, who: "bench (client)", what: "POST /commands answered" },
      ]),
    );
    tracer.clear();
  }
  res.tracer = undefined;
  await tracer.stop();
  return [
    { title: "cold dispatch (POST /prompt → run_started)", samples: TRACE, steps: cold },
    { title: "warm dispatch (POST /prompt → run_started)", samples: TRACE, steps: warmSteps },
    { title: "control round trip (POST /commands get_state)", samples: TRACE, steps: control },
  ];
}

// ---------------------------------------------------------------------------------------------
// 5. Throughput.

interface Throughput {
  workers: number;
  runs: number;
  wallMs: number;
  perWorker: string;
  projectsPerWorker: string;
  latency: Stats;
  failures: number;
  cpu: string;
}

async function benchThroughput(tag: string): Promise<Throughput> {
  const handles: SessionHandle[] = [];
  for (let p = 0; p < TP_PROJECTS; p++) {
    const project = `${tag}-p${pad(p, 2)}`;
    for (let s = 0; s < TP_SESSIONS; s++) handles.push(await newSession(project, s > 0));
  }
  const ends = new Map<string, StampedEvent>();
  const waiters = new Map<string, (e: StampedEvent) => void>();
  const startedBy = new Map<string, string>();
  for (const h of handles) {
    h.sse.listen((e) => {
      if (!e.runId) return;
      if (e.type === "run_started") startedBy.set(e.runId, String(e.json.workerId));
      if (!TERMINAL.has(e.type)) return;
      ends.set(e.runId, e);
      waiters.get(e.runId)?.(e);
    });
  }
  const endOf = (h: SessionHandle, runId: string): Promise<StampedEvent> => {
    const known = ends.get(runId);
    if (known) return Promise.resolve(known);
    return withDiagnosis(
      withTimeout(
        new Promise<StampedEvent>((resolve) => waiters.set(runId, resolve)),
        STEP_MS,
        `the end of run ${runId}`,
      ).finally(() => waiters.delete(runId)),
      h,
      runId,
    );
  };
  const fire = async (
    h: SessionHandle,
    text: string,
  ): Promise<{ runId: string; t0: bigint; end: StampedEvent }> => {
    const t0 = nowNs();
    const { runId } = await api<{ runId: string }>(base, "POST", `${h.path}/prompt`, { text });
    return { runId, t0, end: await endOf(h, runId) };
  };

  // Warm-up: one run per session, so every project has an owner and every pi session is open.
  await Promise.all(handles.map((h, i) => fire(h, `[[reply:ok]] [[tag:${tag}-w${i}]]`)));

  const runs: { runId: string; path: string; project: string; t0: bigint; end: StampedEvent }[] = [];
  let next = 0;
  const meter = new CpuMeter(
    new Map<string, number | undefined>([
      ["gateway", gateway?.proc.pid],
      ...workers.map((w): [string, number | undefined] => [w.id, w.child.proc.pid]),
      ["redis", res.redis?.pid],
      ["bench", process.pid],
    ]),
  );
  const start = nowNs();
  const loop = async (): Promise<void> => {
    while (next < TP_RUNS) {
      const k = next++;
      const h = handles[(k % TP_PROJECTS) * TP_SESSIONS + (Math.floor(k / TP_PROJECTS) % TP_SESSIONS)]!;
      runs.push({ project: h.project, path: h.path, ...(await fire(h, `[[reply:ok]] [[tag:${tag}-${k}]]`)) });
    }
  };
  await Promise.all(Array.from({ length: Math.min(TP_CONCURRENCY, TP_RUNS) }, loop));
  const cpu = meter.since(runs.length);
  // Cross-check every measured run's record (not timed): it must say `finished`.
  let notFinished = 0;
  for (const r of runs) {
    const record = await api<{ status: string }>(base, "GET", `${r.path}/runs/${r.runId}`);
    if (record.status !== "finished") notFinished++;
  }
  const ownerOf = new Map(runs.map((r) => [r.project, startedBy.get(r.runId) ?? "?"]));
  let last = start;
  for (const r of runs) if (r.end.atNs > last) last = r.end.atNs;
  const result: Throughput = {
    workers: workers.length,
    runs: runs.length,
    wallMs: msBetween(start, last),
    perWorker: countBy(runs, (r) => startedBy.get(r.runId) ?? "?"),
    projectsPerWorker: countBy([...ownerOf.values()], (w) => w),
    cpu,
    latency: stats(runs.map((r) => msBetween(r.t0, r.end.atNs))),
    failures: runs.filter((r) => r.end.type !== "run_finished").length + notFinished,
  };
  for (const h of handles) closeSession(h);
  for (let p = 0; p < TP_PROJECTS; p++) await deleteProject(`${tag}-p${pad(p, 2)}`);
  return result;
}

// ---------------------------------------------------------------------------------------------
// 6 + 7. Failover (SIGKILL) and handoff (SIGTERM).

interface Takeover {
  from: string;
  to: string;
  /** Signal → the lease key disappeared (expired or released), if seen before it was taken. */
  leaseGoneMs: number | undefined;
  /** Signal → another worker holds the lease. */
  leaseTakenMs: number;
  /** Signal → the queued run's `run_started` at the SSE client. */
  runStartedMs: number;
  /** Signal → the old worker process exited. */
  exitMs: number | undefined;
  /** How the long run ended (`run_interrupted` reason). */
  longRun: string;
}

async function takeover(signal: "SIGKILL" | "SIGTERM", name: string): Promise<Takeover> {
  const h = await newSession(name);
  const leaseKey = keys.lease(DEFAULT_ORG, name);
  try {
    const t0 = nowNs();
    const long = await api<{ runId: string }>(base, "POST", `${h.path}/prompt`, {
      text: `[[delay:20]] [[deltas:500]] [[tag:${name}-long]]`,
    });
    const started = await h.sse.waitFor(
      (e) => e.runId === long.runId && e.type === "run_started",
      STEP_MS,
      "the long run's run_started",
    );
    await h.sse.waitFor((e) => e.atNs > t0 && isTextDelta(e), STEP_MS, "the long run's first delta");
    const from = String(started.json.workerId);
    const queued = await api<{ runId: string }>(base, "POST", `${h.path}/prompt`, {
      text: `[[reply:ok]] [[tag:${name}-next]]`,
    });
    // The owner has fetched the queued run's job (it waits for its turn). A random extra wait puts
    // the signal at a random point of the lease's renewal period (every TTL/3).
    await sleep(300 + Math.random() * (LEASE_TTL_MS / 3));
    const victim = workerById(from);
    const tSig = nowNs();
    victim.child.signal(signal);
    dropWorker(from);

    let leaseGoneAt: bigint | undefined;
    let to = "";
    const client = res.client!;
    const leaseTakenAt = await pollUntil(
      async () => {
        const value = await client.get(leaseKey);
        const t = nowNs();
        if (value === null) {
          leaseGoneAt ??= t;
          return undefined;
        }
        const holder = parseLeaseToken(value).workerId;
        if (holder === from) return undefined;
        to = holder;
        return t;
      },
      STEP_MS,
      `another worker to hold ${name}`,
      2,
    );
    const next = await h.sse.waitFor(
      (e) => e.runId === queued.runId && e.type === "run_started",
      STEP_MS,
      "the queued run's run_started",
    );
    const longEnd = await h.sse.waitFor(
      (e) => e.runId === long.runId && TERMINAL.has(e.type),
      STEP_MS,
      "the long run's end",
    );
    await h.sse.waitFor(
      (e) => e.runId === queued.runId && e.type === "run_finished",
      STEP_MS,
      "the queued run's end",
    );
    await withTimeout(victim.child.exited, STEP_MS, `${from} to exit`);
    return {
      from,
      to: `${to} (run on ${String(next.json.workerId)})`,
      leaseGoneMs: leaseGoneAt === undefined ? undefined : msBetween(tSig, leaseGoneAt),
      leaseTakenMs: msBetween(tSig, leaseTakenAt),
      runStartedMs: msBetween(tSig, next.atNs),
      exitMs: victim.child.exitedAtNs === undefined ? undefined : msBetween(tSig, victim.child.exitedAtNs),
      longRun: `${longEnd.type}${typeof longEnd.json.reason === "string" ? ` (${longEnd.json.reason})` : ""}`,
    };
  } finally {
    closeSession(h);
    await deleteProject(name);
  }
}

async function benchTakeovers(signal: "SIGKILL" | "SIGTERM", tag: string): Promise<Takeover[]> {
  const out: Takeover[] = [];
  for (let i = 0; i < REPEATS; i++) {
    out.push(await takeover(signal, `${tag}-${i}`));
    log(
      `${signal} #${i + 1}: lease taken after ${ms(out[i]!.leaseTakenMs)}, next run started after ${ms(out[i]!.runStartedMs)}`,
    );
    await startWorker(); // back to two workers before the next round
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Output.

function goal(p50: number, limit: number): string {
  return p50 <= limit
    ? `met (≤ ${limit} ms)`
    : `missed by ${(p50 - limit).toFixed(2)} ms (goal ≤ ${limit} ms)`;
}

const latencyHeaders = ["", "p50", "p99", "mean", "min", "max", "n", "goal (p50)"];
const latencyRow = (label: string, s: Stats, goalText = ""): string[] => [
  label,
  ms(s.p50),
  ms(s.p99),
  ms(s.mean),
  ms(s.min),
  ms(s.max),
  String(s.n),
  goalText,
];

interface Results {
  cold: RunStamps[];
  warm: RunStamps[];
  inProcess: number[];
  control: ControlResult;
  trace: TraceResult[];
  throughput: Throughput[];
  failover: Takeover[];
  handoff: Takeover[];
}

function tables(r: Results): Table[] {
  const cold = stats(sinceT0(r.cold, (x) => x.startedAt));
  const warm = stats(sinceT0(r.warm, (x) => x.startedAt));
  const ctl = stats(r.control.command);
  const fleetDelta = stats(sinceT0(r.warm, (x) => x.firstDeltaAt));
  const local = stats(r.inProcess);
  const out: Table[] = [];
  out.push({
    title: "Latency (client-side clocks, sequential requests)",
    headers: latencyHeaders,
    rows: [
      latencyRow("1. cold dispatch: POST /prompt → run_started at SSE", cold, goal(cold.p50, 5)),
      latencyRow("2. warm dispatch: POST /prompt → run_started at SSE", warm, goal(warm.p50, 2)),
      latencyRow("3. control round trip: POST /commands get_state", ctl, goal(ctl.p50, 5)),
      latencyRow("   floor: GET /v1/healthz (HTTP only)", stats(r.control.healthz)),
      latencyRow("   floor: GET /v1/projects/{id} (HTTP + 1 Redis read)", stats(r.control.project)),
      latencyRow("   floor: Redis PING from the bench", stats(r.control.ping)),
      latencyRow("4. prompt → first text delta, fleet (warm)", fleetDelta),
      latencyRow("   prompt → first text delta, in-process pi", local),
      [
        "   difference (fleet − in-process)",
        signedMs(fleetDelta.p50 - local.p50),
        signedMs(fleetDelta.p99 - local.p99),
        signedMs(fleetDelta.mean - local.mean),
      ],
      [
        "   ratio (fleet / in-process)",
        ratio(fleetDelta.p50, local.p50),
        ratio(fleetDelta.p99, local.p99),
        ratio(fleetDelta.mean, local.mean),
      ],
    ],
    notes: [
      `cold samples ran on: ${countBy(r.cold, (x) => x.workerId)}; warm runs all on ${r.warm[0]?.workerId ?? "?"}`,
    ],
  });

  const split = (runs: RunStamps[], label: string): string[][] => {
    const med = (f: (x: RunStamps) => number | undefined): string => {
      const xs = runs.flatMap((x) => {
        const v = f(x);
        return v === undefined ? [] : [v];
      });
      return xs.length ? ms(median(xs)) : "n/a";
    };
    const enq = (x: RunStamps): number | undefined =>
      x.enqueuedAt === undefined ? undefined : msBetween(x.t0, x.enqueuedAt);
    const enqToStart = (x: RunStamps): number | undefined =>
      x.enqueuedAt === undefined ? undefined : msBetween(x.enqueuedAt, x.startedAt);
    return [
      [
        label,
        med(enq),
        med(enqToStart),
        med((x) => msBetween(x.t0, x.queuedAt)),
        med((x) => msBetween(x.t0, x.answeredAt)),
        med((x) => msBetween(x.t0, x.startedAt)),
        med((x) => (x.firstDeltaAt === undefined ? undefined : msBetween(x.startedAt, x.firstDeltaAt))),
      ],
    ];
  };
  out.push({
    title: "Where dispatch time goes (medians; shared monotonic clock of bench and gateway)",
    headers: [
      "",
      "t0 → enqueuedAtNs",
      "enqueuedAtNs → run_started",
      "t0 → run_queued",
      "t0 → POST answered",
      "t0 → run_started",
      "run_started → first text delta",
    ],
    rows: [...split(r.cold, "cold"), ...split(r.warm, "warm")],
    notes: [
      "t0: bench, just before POST /prompt; enqueuedAtNs: gateway, after requireSession + enqueue-run.lua, just before the BullMQ add",
      "run_queued / run_started / POST answered / first text delta: arrival at the bench (SSE event or full HTTP answer)",
      "run_started → first text delta: worker opens (cold) or reuses (warm) the pi session, pi calls the fake LLM, the delta is appended and relayed",
    ],
  });

  for (const t of r.trace) {
    const summary = summarize(t.steps);
    let prev = 0;
    out.push({
      title: `Trace: ${t.title}, medians over ${t.samples} samples under MONITOR`,
      headers: ["step (connection: command)", "at (ms after t0)", "Δ previous", "seen"],
      rows: summary.map((s) => {
        const row = [
          `${s.who}: ${s.what}`,
          ms(s.medianMs),
          signedMs(s.medianMs - prev),
          `${s.seen}/${t.samples}`,
        ];
        prev = s.medianMs;
        return row;
      }),
      notes: [
        "first occurrence of each command per sample; each step's median is taken on its own, so they need not add up",
        "MONITOR copies every command to the bench process, which slows Redis and the bench: absolute times are inflated, use the order and the gaps",
      ],
    });
  }

  out.push({
    title: `Throughput: ${TP_RUNS} short runs ([[reply:ok]]) over ${TP_PROJECTS} projects × ${TP_SESSIONS} sessions, ${TP_CONCURRENCY} in flight`,
    headers: [
      "workers",
      "runs",
      "wall time",
      "runs/s",
      "POST → run_finished p50",
      "p99",
      "runs per worker",
      "projects per worker",
      "failed",
    ],
    rows: r.throughput.map((t) => [
      String(t.workers),
      String(t.runs),
      seconds(t.wallMs),
      (t.runs / (t.wallMs / 1000)).toFixed(1),
      ms(t.latency.p50),
      ms(t.latency.p99),
      t.perWorker,
      t.projectsPerWorker,
      String(t.failures),
    ]),
    notes: [
      "wall time: first POST → last run_finished at the SSE clients; one unmeasured warm-up run per session first",
      ...r.throughput.map(
        (t) => `CPU during the ${t.workers}-worker run (cores busy, CPU per run): ${t.cpu}`,
      ),
    ],
  });

  const takeoverTable = (title: string, list: Takeover[], goalMs?: number): Table => {
    const med = (f: (t: Takeover) => number | undefined): string => {
      const xs = list.flatMap((t) => {
        const v = f(t);
        return v === undefined ? [] : [v];
      });
      return xs.length ? ms(median(xs)) : "n/a";
    };
    const opt = (x: number | undefined): string => (x === undefined ? "—" : ms(x));
    return {
      title,
      headers: [
        "#",
        "signal → lease gone",
        "signal → lease held by other",
        "signal → next run_started",
        "old worker exited",
        "from → to",
        "long run",
      ],
      rows: [
        ...list.map((t, i) => [
          String(i + 1),
          opt(t.leaseGoneMs),
          ms(t.leaseTakenMs),
          ms(t.runStartedMs),
          opt(t.exitMs),
          `${t.from} → ${t.to}`,
          t.longRun,
        ]),
        [
          "median",
          med((t) => t.leaseGoneMs),
          med((t) => t.leaseTakenMs),
          med((t) => t.runStartedMs),
          med((t) => t.exitMs),
        ],
      ],
      notes:
        goalMs === undefined
          ? []
          : [
              `goal: failover ≤ lease TTL + 2 s = ${goalMs} ms → lease ${goal(median(list.map((t) => t.leaseTakenMs)), goalMs)}, next run ${goal(median(list.map((t) => t.runStartedMs)), goalMs)}`,
            ],
    };
  };
  out.push(
    takeoverTable(
      `Failover after SIGKILL (lease TTL ${LEASE_TTL_MS} ms; owner runs [[delay:20]] [[deltas:500]], one run queued)`,
      r.failover,
      LEASE_TTL_MS + 2000,
    ),
  );
  out.push(
    takeoverTable(`Handoff after SIGTERM (PI_FLEET_DRAIN_TIMEOUT_MS=${DRAIN_MS}; same setup)`, r.handoff),
  );
  return out;
}

// ---------------------------------------------------------------------------------------------

/** The measured code: commit, and whether product code (apps/, libs/) had uncommitted changes. */
function codeVersion(): string {
  try {
    const git = (...args: string[]): string =>
      execFileSync("git", args, { cwd: REPO_ROOT, encoding: "utf8" }).trim();
    const dirty = git("status", "--porcelain", "--", "apps", "libs") !== "";
    return `commit ${git("rev-parse", "--short", "HEAD")}${dirty ? " + uncommitted changes" : ""}`;
  } catch {
    return "commit unknown";
  }
}

const loadAverage = (): string =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(" / ");

async function main(): Promise<Results> {
  const env = environment();
  log(env);
  loadAtStart = loadAverage();
  log(`load average (1/5/15 min): ${loadAtStart}`);
  res.redis = await spawnRedis();
  res.llm = await startFakeLlm();
  res.client = await connectRedis(res.redis.url, "command", "bench-cmd");
  log(`redis-server at ${res.redis.url}, fake LLM at ${res.llm.baseUrl}`);

  log(`in-process pi session: ${WARMUP} + ${WARM} runs …`);
  const inProcess = await benchInProcess(res.llm);

  const home = await tempDir("pf-bench-fleet-");
  baseEnv = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    // The engine is measured, not the request limits (open mode shares one org). The org's run
    // quota (PI_FLEET_ORG_MAX_RUNS, default 64) stays on: it is checked on every dispatch (in
    // start-run.lua), and no figure here runs more than 64 runs at once.
    PI_FLEET_ORG_RATE_LIMIT: "0",
    PI_FLEET_MAX_STREAMS_PER_KEY: "1000000",
    HOME: home,
    REDIS_URL: res.redis.url,
    HOST: "127.0.0.1",
    WORKSPACE_DIR: join(home, "workspace"),
    PI_FLEET_KEY_PREFIX: PREFIX,
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "warn",
    ...(process.env.BENCH_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS } : {}),
  };
  log("starting the gateway and two workers …");
  await startGateway();
  await Promise.all([startWorker(), startWorker()]);
  await api(base, "PUT", "/v1/custom/providers", {
    provider: PROVIDER,
    baseUrl: res.llm.baseUrl,
    api: "openai-completions",
    apiKey: API_KEY,
    models: [{ id: MODEL_ID }],
  });

  log(`1. cold dispatch: ${COLD_WARMUP} + ${COLD} fresh projects …`);
  const cold = await benchCold();
  log(`2+4. warm dispatch / first delta: ${WARMUP} + ${WARM} runs …`);
  const warmSession = await newSession("warm");
  const warm = await benchWarm(warmSession);
  log(`3. control round trip: ${WARMUP} + ${CONTROL} × (healthz, state, get_state) …`);
  const control = await benchControl(warmSession);
  let trace: TraceResult[] = [];
  if (TRACE > 0) {
    log(`trace under MONITOR: ${TRACE} samples each …`);
    trace = await benchTrace(warmSession);
  }
  closeSession(warmSession);
  await deleteProject("warm");

  log("5. throughput with 1 worker …");
  const spare = workers[workers.length - 1]!;
  dropWorker(spare.id);
  await spare.child.stop();
  const tp1 = await benchThroughput("tp1");
  log(`   ${(tp1.runs / (tp1.wallMs / 1000)).toFixed(1)} runs/s; starting a second worker …`);
  await startWorker();
  const tp2 = await benchThroughput("tp2");
  log(`   ${(tp2.runs / (tp2.wallMs / 1000)).toFixed(1)} runs/s`);

  log(`6. failover after SIGKILL × ${REPEATS} …`);
  const failover = await benchTakeovers("SIGKILL", "fo");
  log(`7. handoff after SIGTERM × ${REPEATS} …`);
  const handoff = await benchTakeovers("SIGTERM", "ho");
  return { cold, warm, inProcess, control, trace, throughput: [tp1, tp2], failover, handoff };
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
  const results = await Promise.race([run, failed]);
  const env = `${environment()}; load average (1/5/15 min) at start ${loadAtStart}, at end ${loadAverage()}; ${codeVersion()}`;
  const date = new Date().toISOString().slice(0, 10);
  const all = tables(results);
  const setup =
    `1 gateway + 2 workers as separate processes (apps/gateway, apps/worker), a private redis-server, ` +
    `the fake LLM in the bench process; all on loopback. PI_FLEET_LEASE_TTL_MS=${LEASE_TTL_MS} (default), ` +
    `PI_FLEET_IDLE_RELEASE_MS=3600000, PI_FLEET_DRAIN_TIMEOUT_MS=${DRAIN_MS}, PI_FLEET_ORG_RATE_LIMIT=0 ` +
    `(the org's run quota PI_FLEET_ORG_MAX_RUNS keeps its default, 64).`;
  process.stdout.write(
    `\npi-fleet fleet bench (${date})\nEnvironment: ${env}\nSetup: ${setup}\n\n${all.map(textTable).join("\n\n")}\n`,
  );
  const md = [
    "# Fleet bench",
    "",
    `\`npm run bench:fleet\`, ${date}. Environment: ${env}.`,
    "",
    setup,
    "",
    all.map(markdownTable).join("\n\n"),
    "",
  ].join("\n");
  await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
  await writeFile(RESULTS_FILE, md);
  log(`wrote ${RESULTS_FILE}`);
} catch (err) {
  exitCode = 1;
  const detail = err instanceof BenchAbort ? err.message : err instanceof Error ? err.stack : String(err);
  process.stderr.write(`\nbench failed: ${detail}\n`);
  for (const c of [gateway, ...workers.map((w) => w.child)]) {
    if (c && c.tail().length > 0)
      process.stderr.write(`\nlast output of ${c.name}:\n${c.tail().join("\n")}\n`);
  }
} finally {
  clearTimeout(timer);
  await cleanup();
}
process.exit(exitCode);
