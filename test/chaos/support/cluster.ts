// A pi-fleet cluster of real processes for chaos tests: one private redis-server (AOF on, so it
// can be restarted with its data), N gateways and M workers sharing one workspace and one key
// prefix. Workers can be killed, stopped, continued and restarted by id.

import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectRedis, type Redis } from "@pi-fleet/redis";
import { findFreePort, type SpawnedRedis, spawnRedis } from "@pi-fleet/testkit";
import { type NodeProc, spawnNode } from "./procs.ts";

/** A gateway child. */
export interface GatewayProc extends NodeProc {
  readonly url: string;
}

/** A worker child. */
export interface WorkerProc extends NodeProc {
  readonly id: string;
  /** `http://127.0.0.1:PORT` of its probe server (`/healthz`, `/readyz`). */
  readonly healthUrl: string;
}

/** Options of {@link startCluster}. */
export interface ClusterOptions {
  /** Names the key prefix and temp dirs. */
  label: string;
  gateways?: number;
  /** Worker ids to start (default w1, w2, w3). */
  workers?: string[];
  /** Extra env of every worker (e.g. `PI_FLEET_LEASE_TTL_MS`). */
  workerEnv?: Record<string, string>;
}

/** What a project's lease says. */
export interface LeaseHolder {
  token: string;
  workerId: string;
  epoch: number;
}

const READY_TIMEOUT_MS = 30_000;

/** Parses `<workerId>:<epoch>`. */
export function parseToken(token: string): LeaseHolder {
  const i = token.lastIndexOf(":");
  return { token, workerId: token.slice(0, i), epoch: Number(token.slice(i + 1)) };
}

async function probe(url: string): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1500) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

async function waitReady(proc: NodeProc, url: string, timeoutMs = READY_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!proc.alive()) {
      const e = proc.exitInfo();
      throw new Error(
        `${proc.name} exited (code ${e?.code}, signal ${e?.signal}) before it was ready\n${proc.logs()}`,
      );
    }
    if ((await probe(url)) === 200) return;
    if (Date.now() > deadline) {
      await proc.stop("SIGKILL");
      throw new Error(`${proc.name} not ready at ${url} within ${timeoutMs} ms\n${proc.logs()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A running cluster; see the module comment. */
export class Cluster {
  readonly redis: SpawnedRedis;
  readonly prefix: string;
  readonly root: string;
  readonly workspaceDir: string;
  readonly gateways: GatewayProc[] = [];
  readonly workers = new Map<string, WorkerProc>();
  /** Every worker ever started (including killed ones), for log dumps. */
  readonly allWorkers: WorkerProc[] = [];
  readonly workerEnv: Record<string, string>;
  /** Test-side Redis client (fails fast while Redis is away, reconnects by itself). */
  readonly db: Redis;

  constructor(
    redis: SpawnedRedis,
    db: Redis,
    prefix: string,
    root: string,
    workerEnv: Record<string, string>,
  ) {
    this.redis = redis;
    this.db = db;
    this.prefix = prefix;
    this.root = root;
    this.workspaceDir = join(root, "workspace");
    this.workerEnv = workerEnv;
  }

  private baseEnv(): Record<string, string> {
    return {
      PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
      HOME: join(this.root, "home"),
      REDIS_URL: this.redis.url,
      WORKSPACE_DIR: this.workspaceDir,
      PI_FLEET_KEY_PREFIX: this.prefix,
      LOG_LEVEL: "warn",
      HOST: "127.0.0.1",
    };
  }

  /** Gateway `i` (0-based). */
  gw(i: number): GatewayProc {
    const g = this.gateways[i % this.gateways.length];
    if (!g) throw new Error(`no gateway ${i}`);
    return g;
  }

  /** The live worker with this id. */
  worker(id: string): WorkerProc {
    const w = this.workers.get(id);
    if (!w) throw new Error(`no worker ${id}`);
    return w;
  }

  /** Starts a gateway on a free port and waits for `/v1/readyz`. */
  async startGateway(index = this.gateways.length): Promise<GatewayProc> {
    for (let attempt = 1; ; attempt++) {
      const port = await findFreePort();
      const name = `gateway-${index + 1}`;
      const proc = spawnNode("apps/gateway/src/main.ts", name, { ...this.baseEnv(), PORT: String(port) });
      const url = `http://127.0.0.1:${port}`;
      try {
        await waitReady(proc, `${url}/v1/readyz`);
      } catch (err) {
        if (attempt < 3 && /EADDRINUSE/.test(proc.logs())) continue;
        throw err;
      }
      const g: GatewayProc = Object.assign(proc, { url });
      this.gateways[index] = g;
      return g;
    }
  }

  /**
   * Starts worker `id` (replacing a dead one of that id) and waits for its `/readyz`. The entry is
   * `apps/worker/src/main.ts`, or `CHAOS_WORKER_ENTRY` (e.g. support/traced-worker.ts) if set.
   */
  async startWorker(id: string, env: Record<string, string> = {}): Promise<WorkerProc> {
    const prev = this.workers.get(id);
    if (prev?.alive()) throw new Error(`worker ${id} is still running`);
    for (let attempt = 1; ; attempt++) {
      const port = await findFreePort();
      const proc = spawnNode(
        process.env.CHAOS_WORKER_ENTRY ?? "apps/worker/src/main.ts",
        `worker-${id}#${this.allWorkers.length + 1}`,
        {
          ...this.baseEnv(),
          ...this.workerEnv,
          ...env,
          PI_FLEET_WORKER_ID: id,
          PI_FLEET_WORKER_PORT: String(port),
        },
      );
      const healthUrl = `http://127.0.0.1:${port}`;
      const w: WorkerProc = Object.assign(proc, { id, healthUrl });
      this.allWorkers.push(w);
      try {
        await waitReady(proc, `${healthUrl}/readyz`);
      } catch (err) {
        if (attempt < 3 && /EADDRINUSE/.test(proc.logs())) continue;
        throw err;
      }
      this.workers.set(id, w);
      return w;
    }
  }

  /** The current lease holder of `default.<project>`, if any. */
  async leaseOf(project: string): Promise<LeaseHolder | undefined> {
    const token = await this.db.get(`${this.prefix}:lease:{default.${project}}`);
    return token ? parseToken(token) : undefined;
  }

  /**
   * A project's coordination state, for failure reports: lease (+ PTTL), epoch, the dispatch
   * queue, the project queue's job lists, and the given runs' records.
   */
  async diagnose(project: string, runIds: readonly string[] = []): Promise<string> {
    const p = this.prefix;
    const tag = `{default.${project}}`;
    const q = `${p}:q:${tag}`;
    const d = `${p}:q:dispatch`;
    const out: string[] = [`project ${project}`];
    try {
      out.push(
        `  lease ${await this.db.get(`${p}:lease:${tag}`)} pttl ${await this.db.pttl(`${p}:lease:${tag}`)}`,
      );
      out.push(`  epoch ${await this.db.get(`${p}:epoch:${tag}`)}`);
      out.push(`  dispatch wait ${JSON.stringify(await this.db.lrange(`${d}:wait`, 0, -1))}`);
      const dActive = await this.db.lrange(`${d}:active`, 0, -1);
      const describeJob = async (queue: string, id: string): Promise<string> => {
        const [data, lock, failed] = await Promise.all([
          this.db.hget(`${queue}:${id}`, "data"),
          this.db.get(`${queue}:${id}:lock`),
          this.db.hget(`${queue}:${id}`, "failedReason"),
        ]);
        return `${id}=${data ?? "(no job)"} lock=${lock ?? "none"}${failed ? ` failed=${failed}` : ""}`;
      };
      out.push(
        `  dispatch active ${(await Promise.all(dActive.map((id) => describeJob(d, id)))).join("; ")}`,
      );
      out.push(
        `  dispatch stalled ${JSON.stringify(await this.db.smembers(`${d}:stalled`))} stalled-check pttl ${await this.db.pttl(`${d}:stalled-check`)}`,
      );
      const qActive = await this.db.lrange(`${q}:active`, 0, -1);
      out.push(
        `  project active locks ${(await Promise.all(qActive.map(async (id) => `${id.slice(0, 8)}:${(await this.db.get(`${q}:${id}:lock`)) ?? "none"}`))).join(" ")}`,
      );
      out.push(`  project stalled ${JSON.stringify(await this.db.smembers(`${q}:stalled`))}`);
      out.push(`  dispatch dedup ${await this.db.get(`${d}:de:default.${project}`)}`);
      for (const list of ["wait", "active"]) {
        out.push(`  project ${list} ${JSON.stringify(await this.db.lrange(`${q}:${list}`, 0, -1))}`);
      }
      for (const z of ["delayed", "prioritized", "completed", "failed"]) {
        out.push(`  project ${z} ${JSON.stringify(await this.db.zrange(`${q}:${z}`, "0", "-1"))}`);
      }
      for (const runId of runIds) {
        out.push(`  run ${runId} ${JSON.stringify(await this.db.hgetall(`${p}:run:${tag}:${runId}`))}`);
        const job = await this.db.hgetall(`${q}:${runId}`);
        out.push(`  job ${runId} ${JSON.stringify({ ...job, data: undefined })}`);
      }
    } catch (err) {
      out.push(`  (diagnosis failed: ${(err as Error).message})`);
    }
    return out.join("\n");
  }

  /** Working directory of a project (the agent's cwd). */
  projectDir(project: string): string {
    return join(this.workspaceDir, "default", "projects", project);
  }

  /**
   * For a failed test: saves all logs (see {@link saveLogs}) and returns the directory plus the
   * last `lines` distinct pino lines of each process (stack-trace noise left out).
   */
  async failureReport(lines = 15): Promise<string> {
    const dir = await this.saveLogs();
    const procs: NodeProc[] = [...this.gateways, ...this.allWorkers];
    const tails = procs.map((p) => {
      const json = p
        .logs()
        .split("\n")
        .filter((l) => l.startsWith("{"));
      const distinct = [...new Set(json.map((l) => l.replace(/"time":\d+,/, "")))];
      return `--- ${p.name} (pid ${p.pid}) ---\n${distinct.slice(-lines).join("\n")}`;
    });
    return `process logs saved in ${dir}\n${tails.join("\n")}`;
  }

  /**
   * Writes every process's full output to `<tmp>/pi-fleet-chaos-logs/<prefix>/` (kept after the
   * run, for post-mortems) and returns the directory.
   */
  async saveLogs(): Promise<string> {
    const dir = join(tmpdir(), "pi-fleet-chaos-logs", this.prefix);
    await mkdir(dir, { recursive: true });
    const procs: NodeProc[] = [...this.gateways, ...this.allWorkers];
    await Promise.all(procs.map((p) => writeFile(join(dir, `${p.name}.log`), p.logs())));
    return dir;
  }

  /** Stops every process, Redis and removes the temp dirs. */
  async close(): Promise<void> {
    const procs: NodeProc[] = [...this.gateways, ...this.allWorkers];
    await Promise.all(procs.map((p) => p.stop("SIGKILL")));
    this.db.disconnect();
    await this.redis.stop().catch(() => undefined);
    await rm(this.root, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** A short unique key prefix (≤ 32 chars, `[A-Za-z0-9_-]`). */
export function chaosPrefix(label: string): string {
  const slug = label
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 20);
  return `c-${slug}-${Math.random().toString(16).slice(2, 8)}`;
}

/**
 * Spawns Redis (AOF on), then the gateways and workers in parallel; resolves once all are ready.
 * On failure everything started is torn down before the error propagates.
 */
export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const root = await mkdtemp(join(tmpdir(), "pi-fleet-chaos-"));
  await mkdir(join(root, "home"), { recursive: true });
  await mkdir(join(root, "workspace"), { recursive: true });
  let redis: SpawnedRedis;
  let db: Redis;
  try {
    redis = await spawnRedis({ appendonly: true });
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }
  try {
    db = await connectRedis(redis.url, "command", "chaos-test");
  } catch (err) {
    await redis.stop();
    await rm(root, { recursive: true, force: true });
    throw err;
  }
  const cluster = new Cluster(redis, db, chaosPrefix(opts.label), root, opts.workerEnv ?? {});
  try {
    const gateways = Array.from({ length: opts.gateways ?? 2 }, (_, i) => cluster.startGateway(i));
    const workers = (opts.workers ?? ["w1", "w2", "w3"]).map((id) => cluster.startWorker(id));
    await Promise.all([...gateways, ...workers]);
  } catch (err) {
    await cluster.close();
    throw err;
  }
  return cluster;
}
