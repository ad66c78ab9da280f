/**
 * `npm run bench`: prompt → first text delta latency, pi-fleet vs an in-process pi session.
 *
 * - fleet: a single-node pi-fleet (`apps/all/src/main.ts`, gateway + worker in one child process)
 *   on a private redis-server. One SSE client stays connected to the session; the clock starts
 *   just before `POST …/prompt` and stops when that client receives the run's first
 *   `message_update` with `assistantMessageEvent.type === "text_delta"`.
 * - in-process: the same prompt on a pi session opened with `@pi-fleet/pi-runtime` in this
 *   process; the clock stops when the run's sink sees the first text delta.
 *
 * Both talk to the same fake LLM (served by this process over loopback HTTP), run sequentially,
 * with the same warm-up and number of measured runs. Timing is `performance.now()` in this
 * process only. See bench/README.md.
 *
 * Env: BENCH_RUNS (measured runs per side, default 200), BENCH_WARMUP (default 20),
 * BENCH_TIMEOUT_MS (whole bench, default 300000).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { arch, cpus, platform, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import type { WireEvent } from "@pi-fleet/contracts";
import { openSession, type PiSession, preparePiProcess, RuntimeCache } from "@pi-fleet/pi-runtime";
import {
  type FakeLlm,
  findFreePort,
  openSse,
  type SpawnedRedis,
  type SseConnection,
  spawnRedis,
  startFakeLlm,
} from "@pi-fleet/testkit";

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "prompt-latency.md");
const PROVIDER = "fake";
const MODEL_ID = "fake-model";
const API_KEY = "sk-bench";
/** Per-event wait on the SSE stream / per in-process run before the bench gives up. */
const STEP_TIMEOUT_MS = 30_000;

function intFromEnv(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`bench: ${name} must be an integer >= ${min} (got ${JSON.stringify(raw)})\n`);
    process.exit(2);
  }
  return n;
}

const RUNS = intFromEnv("BENCH_RUNS", 200, 1);
const WARMUP = intFromEnv("BENCH_WARMUP", 20, 0);
const TIMEOUT_MS = intFromEnv("BENCH_TIMEOUT_MS", 300_000, 1000);

const promptText = (i: number): string => `[[reply:hello world]] [[tag:${i}]]`;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isTextDelta(event: unknown): boolean {
  return (
    isRecord(event) &&
    event.type === "message_update" &&
    isRecord(event.assistantMessageEvent) &&
    event.assistantMessageEvent.type === "text_delta"
  );
}

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// Everything the bench started, torn down by cleanup() whatever happened.

interface Resources {
  redis?: SpawnedRedis;
  llm?: FakeLlm;
  child?: ChildProcess;
  childExited?: Promise<void>;
  sse?: SseConnection;
  session?: PiSession;
  dirs: string[];
}

const res: Resources = { dirs: [] };
/** Last lines the fleet child wrote (stdout + stderr), shown when something fails. */
const childOutput: string[] = [];
let stopping = false;

/** A failure whose message says it all (no stack trace printed). */
class BenchAbort extends Error {}

let fail: (err: Error) => void = () => {};
const failed = new Promise<never>((_, reject) => {
  fail = reject;
});
failed.catch(() => {});

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  res.dirs.push(dir);
  return dir;
}

async function step(what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    log(`cleanup: ${what} failed: ${(err as Error).message}`);
  }
}

async function cleanup(): Promise<void> {
  stopping = true;
  const { sse, session, child, childExited, llm, redis } = res;
  if (sse) {
    sse.close();
    await step("closing the SSE client", () => sse.closed);
  }
  if (session) await step("disposing the in-process session", () => session.dispose());
  if (child && childExited && child.exitCode === null && child.signalCode === null) {
    await step("stopping pi-fleet", async () => {
      child.kill("SIGTERM");
      const timer = setTimeout(() => {
        log("pi-fleet did not exit within 20 s of SIGTERM; sending SIGKILL");
        child.kill("SIGKILL");
      }, 20_000);
      await childExited;
      clearTimeout(timer);
    });
  }
  if (llm) await step("closing the fake LLM", () => llm.close());
  if (redis) await step("stopping redis-server", () => redis.stop());
  for (const dir of res.dirs) {
    await step(`removing ${dir}`, () => rm(dir, { recursive: true, force: true }));
  }
}

// Never leave the fleet child behind, even if this process exits abruptly.
process.on("exit", () => {
  const child = res.child;
  if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => fail(new BenchAbort(`interrupted by ${signal}`)));
}

// ---------------------------------------------------------------------------------------------
// Statistics and output.

interface Stats {
  p50: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** Nearest-rank percentile of an ascending array. */
function percentile(sorted: readonly number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] ?? Number.NaN;
}

function stats(samples: readonly number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    mean: sorted.reduce((sum, x) => sum + x, 0) / sorted.length,
    min: sorted[0] ?? Number.NaN,
    max: sorted[sorted.length - 1] ?? Number.NaN,
  };
}

const ms = (x: number): string => `${x.toFixed(2)} ms`;
const signedMs = (x: number): string => `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(2)} ms`;
const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;

function environment(): string {
  const cpuList = cpus();
  const model = cpuList[0]?.model.trim() ?? "unknown CPU";
  const memGiB = (totalmem() / 1024 ** 3).toFixed(1);
  return `Node ${process.version}, ${cpuList.length} × ${model}, ${platform()} ${release()} ${arch()}, ${memGiB} GiB RAM`;
}

interface Row {
  label: string;
  cells: string[];
}

function rows(fleet: Stats, local: Stats): Row[] {
  return [
    {
      label: "pi-fleet (gateway → queue → worker → stream → SSE)",
      cells: [fleet.p50, fleet.p99, fleet.mean, fleet.min, fleet.max].map(ms),
    },
    {
      label: "in-process pi session",
      cells: [local.p50, local.p99, local.mean, local.min, local.max].map(ms),
    },
    {
      label: "difference (fleet − in-process)",
      cells: [
        signedMs(fleet.p50 - local.p50),
        signedMs(fleet.p99 - local.p99),
        signedMs(fleet.mean - local.mean),
        "",
        "",
      ],
    },
    {
      label: "ratio (fleet / in-process)",
      cells: [
        ratio(fleet.p50, local.p50),
        ratio(fleet.p99, local.p99),
        ratio(fleet.mean, local.mean),
        "",
        "",
      ],
    },
  ];
}

const HEADERS = ["", "p50", "p99", "mean", "min", "max"];

function textTable(table: Row[]): string {
  const lines = [HEADERS, ...table.map((r) => [r.label, ...r.cells])];
  const widths = HEADERS.map((_, c) => Math.max(...lines.map((l) => (l[c] ?? "").length)));
  const fmt = (l: string[]): string =>
    l
      .map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0)))
      .join("  ")
      .trimEnd();
  const rule = widths.map((w) => "─".repeat(w)).join("  ");
  return [fmt(lines[0] ?? []), rule, ...lines.slice(1).map(fmt)].join("\n");
}

function markdown(table: Row[], date: string, env: string): string {
  // Aligned the way `biome format` writes markdown tables, so the results file stays lint-clean.
  const lines = [HEADERS, ...table.map((r) => [r.label, ...r.cells])];
  const widths = HEADERS.map((_, c) => Math.max(3, ...lines.map((l) => (l[c] ?? "").length)));
  const fmt = (l: string[]): string =>
    `| ${l.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))).join(" | ")} |`;
  const header = fmt(HEADERS);
  const align = `| ${widths.map((w, c) => (c === 0 ? `:${"-".repeat(w - 1)}` : `${"-".repeat(w - 1)}:`)).join(" | ")} |`;
  const body = lines.slice(1).map(fmt);
  return [
    `Prompt → first text delta, ${RUNS} sequential warm runs per side after ${WARMUP} warm-up runs ` +
      `(\`npm run bench\`, ${date}).`,
    "",
    header,
    align,
    ...body,
    "",
    `Environment: ${env}. Fake LLM (\`[[reply:hello world]]\`), Redis and pi-fleet on the same machine.`,
    "",
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// The in-process baseline.

async function benchInProcess(llm: FakeLlm): Promise<number[]> {
  const projectDir = await tempDir("pf-bench-project-");
  const agentDir = await tempDir("pf-bench-agent-");
  preparePiProcess(agentDir); // as the worker does at boot: PI_OFFLINE, no telemetry, private agent dir
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
  for (let i = 0; i < WARMUP + RUNS; i++) {
    let t1: number | undefined;
    const sink = (event: WireEvent): void => {
      if (t1 === undefined && isTextDelta(event)) t1 = performance.now();
    };
    const t0 = performance.now();
    const outcome = await withTimeout(session.run(promptText(i), {}, sink), `in-process run ${i}`);
    if (outcome.status !== "finished") {
      throw new Error(`in-process run ${i} ended ${outcome.status}: ${outcome.error ?? "(no error)"}`);
    }
    if (t1 === undefined) throw new Error(`in-process run ${i} finished without a text delta`);
    if (i >= WARMUP) samples.push(t1 - t0);
  }
  res.session = undefined;
  await session.dispose();
  return samples;
}

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} took longer than ${STEP_TIMEOUT_MS} ms`)),
      STEP_TIMEOUT_MS,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// The fleet.

async function startFleet(redisUrl: string): Promise<string> {
  const workspace = await tempDir("pf-bench-fleet-");
  const port = await findFreePort();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    // The engine is measured, not the per-org limits (open mode shares one org).
    PI_FLEET_ORG_RATE_LIMIT: "0",
    PI_FLEET_MAX_STREAMS_PER_KEY: "1000000",
    PI_FLEET_ORG_MAX_RUNS: "0",
    HOME: process.env.HOME ?? workspace,
    REDIS_URL: redisUrl,
    PORT: String(port),
    HOST: "127.0.0.1",
    WORKSPACE_DIR: join(workspace, "workspace"),
    PI_FLEET_KEY_PREFIX: "bench",
    LOG_LEVEL: "warn",
  };
  const child = spawn(process.execPath, ["--conditions=@pi-fleet/source", "apps/all/src/main.ts"], {
    cwd: REPO_ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  res.child = child;
  res.childExited = once(child, "exit").then(() => undefined);
  const keep = (chunk: Buffer): void => {
    for (const line of chunk.toString("utf8").split("\n")) {
      if (line.trim() === "") continue;
      childOutput.push(line);
      if (childOutput.length > 40) childOutput.shift();
    }
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  child.on("exit", (code, signal) => {
    if (!stopping) fail(new BenchAbort(`pi-fleet exited unexpectedly (code ${code}, signal ${signal})`));
  });

  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const r = await fetch(`${base}/v1/readyz`, { signal: AbortSignal.timeout(2000) });
      if (r.status === 200) return base;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error("pi-fleet was not ready within 60 s (GET /v1/readyz)");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function api<T>(base: string, method: string, path: string, body?: unknown): Promise<T> {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path} → HTTP ${r.status}: ${text}`);
  return JSON.parse(text) as T;
}

async function benchFleet(base: string, llm: FakeLlm): Promise<number[]> {
  await api(base, "PUT", "/v1/custom/providers", {
    provider: PROVIDER,
    baseUrl: llm.baseUrl,
    api: "openai-completions",
    apiKey: API_KEY,
    models: [{ id: MODEL_ID }],
  });
  const project = await api<{ id: string }>(base, "POST", "/v1/projects", { name: "bench" });
  const session = await api<{ id: string }>(base, "POST", `/v1/projects/${project.id}/sessions`, {
    provider: PROVIDER,
    modelId: MODEL_ID,
  });
  const sessionPath = `/v1/projects/${project.id}/sessions/${session.id}`;
  const sse = await openSse(`${base}${sessionPath}/events`);
  res.sse = sse;
  if (sse.status !== 200) throw new Error(`GET ${sessionPath}/events → HTTP ${sse.status}: ${sse.errorBody}`);

  const samples: number[] = [];
  for (let i = 0; i < WARMUP + RUNS; i++) {
    const t0 = performance.now();
    const posted = api<{ runId: string }>(base, "POST", `${sessionPath}/prompt`, { text: promptText(i) });
    posted.catch(() => {}); // awaited below; the SSE loop may fail first
    let runId: string | undefined;
    let t1: number | undefined;
    // Events of earlier runs are skipped until this run's run_queued; the run ends at its terminal event.
    for (;;) {
      const event = (await sse.next(STEP_TIMEOUT_MS)).json;
      const now = performance.now();
      if (!isRecord(event)) continue;
      if (runId === undefined) {
        if (event.type === "run_queued" && typeof event.runId === "string") runId = event.runId;
        continue;
      }
      if (t1 === undefined && isTextDelta(event)) t1 = now;
      if (event.runId !== runId) continue;
      if (event.type === "run_finished") break;
      if (typeof event.type === "string" && /^run_(failed|aborted|interrupted|cancelled)$/.test(event.type)) {
        throw new Error(`fleet run ${i} ended with ${event.type}: ${JSON.stringify(event)}`);
      }
    }
    const answer = await posted;
    if (answer.runId !== runId) {
      throw new Error(`fleet run ${i}: POST answered run ${answer.runId} but the stream queued ${runId}`);
    }
    if (t1 === undefined) throw new Error(`fleet run ${i} finished without a text delta`);
    if (i >= WARMUP) samples.push(t1 - t0);
  }
  res.sse = undefined;
  sse.close();
  await sse.closed;
  return samples;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const env = environment();
  log(`${env}`);
  log(`runs: ${RUNS} measured + ${WARMUP} warm-up per side; timeout ${TIMEOUT_MS / 1000} s`);

  res.redis = await spawnRedis();
  res.llm = await startFakeLlm();
  log(`redis-server at ${res.redis.url}, fake LLM at ${res.llm.baseUrl}`);

  // Baseline first, before the fleet child exists, so nothing else competes for the cores.
  log("in-process pi session …");
  const local = await benchInProcess(res.llm);
  const requestsBefore = res.llm.requests.length;

  log("starting pi-fleet (apps/all/src/main.ts) …");
  const base = await startFleet(res.redis.url);
  log(`pi-fleet ready at ${base}; fleet runs …`);
  const fleet = await benchFleet(base, res.llm);
  const llmCalls = res.llm.requests.length - requestsBefore;
  if (llmCalls !== WARMUP + RUNS) {
    throw new Error(`expected ${WARMUP + RUNS} fake LLM calls from the fleet, saw ${llmCalls}`);
  }

  const date = new Date().toISOString().slice(0, 10);
  const table = rows(stats(fleet), stats(local));
  const md = markdown(table, date, env);
  process.stdout.write(
    `\nPrompt → first text delta (${RUNS} warm runs per side, ${WARMUP} warm-up)\n` +
      `Environment: ${env}\n\n${textTable(table)}\n\nMarkdown (for the README's "Performance" section):\n\n${md}\n`,
  );
  await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
  await writeFile(RESULTS_FILE, `# Prompt latency\n\n${md}`);
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
  if (childOutput.length > 0) {
    process.stderr.write(`\nlast pi-fleet output:\n${childOutput.join("\n")}\n`);
  }
} finally {
  clearTimeout(timer);
  await cleanup();
}
process.exit(exitCode);
