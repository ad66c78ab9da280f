// A small multi-process pi-fleet for streaming e2e tests: worker and gateway processes
// (`apps/worker/src/main.ts`, `apps/gateway/src/main.ts`) as separate REAL children sharing one
// Redis (`inject("redisUrl")`), one key prefix and one workspace. Modelled on test/support/stack.ts:
// every child is tracked (`stopAllFleets()` for afterAll), an `exit` hook SIGKILLs leftovers, and a
// /bin/sh sidecar SIGKILLs the child if the test process itself dies (vitest forks can be SIGKILLed
// without running hooks). Output is kept (tail) for failure messages. Also reads a child's RSS.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findFreePort } from "@pi-fleet/testkit";
import { repoRoot } from "../../support/stack.ts";

/** How a child ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One spawned node process. */
export interface FleetProc {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves when the process has exited. */
  readonly exit: Promise<ExitInfo>;
  alive(): boolean;
  /** Sends `sig` (default SIGTERM), waits for the exit, SIGKILLs after `graceMs` (default 20 s). */
  stop(sig?: NodeJS.Signals, graceMs?: number): Promise<ExitInfo>;
  /** SIGKILL (a crash) and wait until it is gone. */
  kill(): Promise<ExitInfo>;
  /** Everything it wrote to stdout/stderr (tail). */
  logs(): string;
}

/** A gateway child and its base URL. */
export interface GatewayProc extends FleetProc {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
}

/** Options of {@link startFleet}. */
export interface FleetOptions {
  /** Always `inject("redisUrl")`. */
  redisUrl: string;
  /** `PI_FLEET_KEY_PREFIX` (≤ 32 chars; `uniquePrefix` with a short label). */
  prefix: string;
  /** Number of gateway processes (default 2). */
  gateways?: number;
  /** Worker ids, one process each (default ["w1"]). */
  workers?: string[];
  /** Extra env of every process. */
  env?: Record<string, string>;
  /** Extra env of every gateway. */
  gatewayEnv?: Record<string, string>;
  /** Extra env of every worker. */
  workerEnv?: Record<string, string>;
}

const MAX_LOG_CHARS = 2 * 1024 * 1024;
const READY_TIMEOUT_MS = 30_000;
const live = new Set<FleetProc>();

process.once("exit", () => {
  for (const p of live) {
    if (p.alive()) {
      try {
        process.kill(p.pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
  }
});

// $1 = pid, $2 = a temp dir to remove afterwards ("" for none; the fleet's shared root — whichever
// watchdog gets there first removes it). Our stdin pipe reaching EOF without a "done" line means
// the test process died: SIGKILL the child.
const WATCHDOG_SCRIPT = `
read -r line
[ "$line" = done ] && exit 0
kill -KILL "$1" 2>/dev/null
n=0
while kill -0 "$1" 2>/dev/null && [ "$n" -lt 20 ]; do sleep 0.1; n=$((n + 1)); done
[ -n "$2" ] && rm -rf -- "$2"
exit 0
`;

function spawnWatchdog(pid: number, cleanupDir: string): ChildProcess {
  const dog = spawn("/bin/sh", ["-c", WATCHDOG_SCRIPT, "fleet-watchdog", String(pid), cleanupDir], {
    stdio: ["pipe", "ignore", "ignore"],
  });
  dog.stdin?.on("error", () => {});
  (dog.stdin as { unref?: () => void } | null)?.unref?.();
  dog.unref();
  return dog;
}

function spawnNode(entry: string, name: string, env: Record<string, string>, cleanupDir: string): FleetProc {
  const child = spawn(process.execPath, ["--conditions=@pi-fleet/source", entry], {
    cwd: repoRoot,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (child.pid === undefined) throw new Error(`could not spawn ${name} (${entry})`);
  const pid = child.pid;
  let output = "";
  const collect = (chunk: Buffer): void => {
    output += chunk.toString("utf8");
    if (output.length > MAX_LOG_CHARS) output = output.slice(-MAX_LOG_CHARS);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  child.once("error", (err) => collect(Buffer.from(`spawn error: ${err.message}\n`)));
  let info: ExitInfo | undefined;
  const exit = new Promise<ExitInfo>((resolveExit) => {
    child.once("exit", (code, signal) => {
      info = { code, signal };
      resolveExit(info);
    });
  });
  const dog = spawnWatchdog(pid, cleanupDir);
  const proc: FleetProc = {
    name,
    pid,
    child,
    exit,
    alive: () => info === undefined,
    async stop(sig = "SIGTERM", graceMs = 20_000) {
      if (info) return info;
      try {
        process.kill(pid, sig);
      } catch {
        // exited meanwhile
      }
      const timer = setTimeout(() => {
        if (!info) child.kill("SIGKILL");
      }, graceMs);
      const done = await exit;
      clearTimeout(timer);
      return done;
    },
    kill: () => proc.stop("SIGKILL"),
    logs: () => output,
  };
  void exit.then(() => {
    dog.stdin?.end("done\n");
    live.delete(proc);
  });
  live.add(proc);
  return proc;
}

async function probe(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1500) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

async function waitReady(proc: FleetProc, url: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (!proc.alive()) {
      const e = await proc.exit;
      throw new Error(
        `${proc.name} exited (code ${e.code}, signal ${e.signal}) before it was ready\n--- output ---\n${proc.logs()}`,
      );
    }
    if (await probe(url)) return;
    if (Date.now() > deadline) {
      await proc.kill();
      throw new Error(`${proc.name} not ready at ${url} within ${READY_TIMEOUT_MS} ms\n${proc.logs()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Resident set size of a live process in bytes (`VmRSS` in /proc/<pid>/status). */
export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** A running multi-process fleet. */
export class Fleet {
  readonly prefix: string;
  readonly root: string;
  readonly workspaceDir: string;
  readonly gateways: GatewayProc[] = [];
  readonly workers: FleetProc[] = [];
  private readonly opts: FleetOptions;
  private nextGateway = 0;

  constructor(opts: FleetOptions, root: string) {
    this.opts = opts;
    this.prefix = opts.prefix;
    this.root = root;
    this.workspaceDir = join(root, "workspace");
  }

  private baseEnv(): Record<string, string> {
    return {
      PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
      HOME: join(this.root, "home"),
      REDIS_URL: this.opts.redisUrl,
      WORKSPACE_DIR: this.workspaceDir,
      PI_FLEET_KEY_PREFIX: this.prefix,
      LOG_LEVEL: "warn",
      HOST: "127.0.0.1",
      ...this.opts.env,
    };
  }

  /** Gateway `i` (0-based); throws if there is none. */
  gw(i: number): GatewayProc {
    const g = this.gateways[i];
    if (!g) throw new Error(`no gateway ${i}`);
    return g;
  }

  /**
   * Spawns a gateway on a free port with `env` on top of the fleet's, without waiting for it to be
   * ready (for start-up failures); not listed in `gateways`.
   */
  async spawnGateway(env: Record<string, string> = {}): Promise<GatewayProc> {
    const index = this.nextGateway++;
    const port = String(await findFreePort());
    const proc = spawnNode(
      "apps/gateway/src/main.ts",
      `gateway-${String.fromCharCode(65 + index)}`,
      { ...this.baseEnv(), ...this.opts.gatewayEnv, ...env, PORT: port },
      this.root,
    );
    return Object.assign(proc, { url: `http://127.0.0.1:${port}` });
  }

  /** Starts a gateway on a free port and waits for `/v1/readyz`. */
  async startGateway(): Promise<GatewayProc> {
    const index = this.nextGateway++;
    for (let attempt = 1; ; attempt++) {
      const port = await findFreePort();
      const proc = spawnNode(
        "apps/gateway/src/main.ts",
        `gateway-${String.fromCharCode(65 + index)}`,
        { ...this.baseEnv(), ...this.opts.gatewayEnv, PORT: String(port) },
        this.root,
      );
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

  /** Starts worker `id` with a probe port and waits for its `/readyz`. */
  async startWorker(id: string): Promise<FleetProc> {
    for (let attempt = 1; ; attempt++) {
      const port = await findFreePort();
      const proc = spawnNode(
        "apps/worker/src/main.ts",
        `worker-${id}`,
        {
          ...this.baseEnv(),
          ...this.opts.workerEnv,
          PI_FLEET_WORKER_ID: id,
          PI_FLEET_WORKER_PORT: String(port),
        },
        this.root,
      );
      try {
        await waitReady(proc, `http://127.0.0.1:${port}/readyz`);
      } catch (err) {
        if (attempt < 3 && /EADDRINUSE/.test(proc.logs())) continue;
        throw err;
      }
      this.workers.push(proc);
      return proc;
    }
  }

  /** The last `lines` lines of every process's output, for failure messages. */
  logTails(lines = 20): string {
    return [...this.gateways, ...this.workers]
      .map((p) => `--- ${p.name} (pid ${p.pid}) ---\n${p.logs().split("\n").slice(-lines).join("\n")}`)
      .join("\n");
  }

  /** SIGKILLs every process and removes the temp dir. Idempotent. */
  async close(): Promise<void> {
    await Promise.all([...this.gateways, ...this.workers].map((p) => p.kill()));
    await rm(this.root, { recursive: true, force: true }).catch(() => undefined);
  }
}

const fleets = new Set<Fleet>();

/**
 * Starts the workers, then the gateways, all in parallel; resolves once every process is ready.
 * On failure everything started is torn down before the error propagates.
 */
export async function startFleet(opts: FleetOptions): Promise<Fleet> {
  const root = await mkdtemp(join(tmpdir(), "pi-fleet-e2e-streams-"));
  await mkdir(join(root, "home"), { recursive: true });
  await mkdir(join(root, "workspace"), { recursive: true });
  const fleet = new Fleet(opts, root);
  fleets.add(fleet);
  try {
    await Promise.all([
      ...(opts.workers ?? ["w1"]).map((id) => fleet.startWorker(id)),
      ...Array.from({ length: opts.gateways ?? 2 }, () => fleet.startGateway()),
    ]);
  } catch (err) {
    await fleet.close();
    fleets.delete(fleet);
    throw err;
  }
  return fleet;
}

/** Ends every fleet still running (for afterAll). */
export async function stopAllFleets(): Promise<void> {
  const all = [...fleets];
  fleets.clear();
  await Promise.all(all.map((f) => f.close()));
}
