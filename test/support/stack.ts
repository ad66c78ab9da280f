// Runs pi-fleet's single-node mode (`npm start`: apps/all/src/main.ts) as a REAL child process
// for e2e tests, on a private port, Redis key prefix and workspace. Every started process is
// tracked: `stopAllStacks()` (call it from afterAll/afterEach) ends whatever a test left running,
// an `exit` hook SIGKILLs leftovers, and a tiny /bin/sh sidecar SIGKILLs the child if the test
// process itself dies (vitest forks are SIGKILLed without running exit hooks).

import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { findFreePort } from "@pi-fleet/testkit";

/** The repository root (where `npm start` runs). */
export const repoRoot: string = resolve(fileURLToPath(new URL("../..", import.meta.url)));

/** Options of {@link startStack}. */
export interface StackOptions {
  /** Redis the process uses (always `inject("redisUrl")` in tests, never 6379). */
  redisUrl: string;
  /** `PI_FLEET_KEY_PREFIX`, unique per test file (`uniquePrefix`). */
  prefix: string;
  /**
   * `WORKSPACE_DIR`. Default: `<fresh temp dir>/workspace`, removed again when the stack stops.
   * Pass one from {@link createTempWorkspace} to reuse it across stacks (restart tests).
   */
  workspaceDir?: string;
  /** Gateway port; default a free one (retried if lost to a race). */
  port?: number;
  /** Extra/overriding environment variables (e.g. `PI_FLEET_STREAM_MAXLEN`). */
  env?: Record<string, string>;
  /** How long to wait for `/v1/readyz` to answer 200; default 30 s. */
  readyTimeoutMs?: number;
}

/** A running single-node pi-fleet process. */
export interface Stack {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  readonly workspaceDir: string;
  readonly child: ChildProcess;
  /**
   * Sends `signal` (default SIGTERM), waits for the process to exit and resolves its exit code
   * (null when it died by a signal). SIGKILLs it if it is still alive after `graceMs`
   * (default 45 s; single-node mode's own grace period is 30 s). Idempotent.
   */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
  /** SIGKILL (a crash) and wait until it is gone. */
  kill(): Promise<void>;
  /** Everything the process wrote to stdout and stderr so far. */
  logs(): string;
}

const MAX_LOG_CHARS = 8 * 1024 * 1024;
const live = new Set<Stack>();

// Last resort for a test process that exits without its hooks having stopped everything.
process.once("exit", () => {
  for (const stack of live) {
    if (stack.child.exitCode === null && stack.child.signalCode === null) stack.child.kill("SIGKILL");
  }
});

/** A fresh temp dir `<tmp>/pi-fleet-e2e-XXXX/workspace` (not created yet) and its remover. */
export async function createTempWorkspace(): Promise<{ workspaceDir: string; remove(): Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), "pi-fleet-e2e-"));
  return {
    workspaceDir: join(root, "workspace"),
    remove: () => rm(root, { recursive: true, force: true }),
  };
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

// $1 = pid to kill, $2 = temp dir to delete afterwards ("" for none). Our stdin pipe reaching EOF
// without a "done" line means the test process died: SIGKILL the child, wait briefly for it to go,
// then remove the temp dir it was using.
const WATCHDOG_SCRIPT = `
read -r line
[ "$line" = done ] && exit 0
kill -KILL "$1" 2>/dev/null
n=0
while kill -0 "$1" 2>/dev/null && [ "$n" -lt 20 ]; do sleep 0.1; n=$((n + 1)); done
[ -n "$2" ] && rm -rf -- "$2"
exit 0
`;

/** Spawns the /bin/sh watchdog of `pid` (see {@link WATCHDOG_SCRIPT}). */
function spawnWatchdog(pid: number, cleanupDir: string): ChildProcess {
  const dog = spawn("/bin/sh", ["-c", WATCHDOG_SCRIPT, "stack-watchdog", String(pid), cleanupDir], {
    stdio: ["pipe", "ignore", "ignore"],
  });
  dog.stdin?.on("error", () => {});
  // Neither the watchdog nor its pipe may keep the test process alive.
  (dog.stdin as { unref?: () => void } | null)?.unref?.();
  dog.unref();
  return dog;
}

async function probeReady(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/v1/readyz`, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

class PortTakenError extends Error {}

async function launch(
  opts: StackOptions,
  port: number,
  workspaceDir: string,
  home: string,
  ownedRoot: string | undefined,
  afterExit: () => Promise<void>,
): Promise<Stack> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
    HOME: home,
    REDIS_URL: opts.redisUrl,
    PORT: String(port),
    HOST: "127.0.0.1",
    WORKSPACE_DIR: workspaceDir,
    PI_FLEET_KEY_PREFIX: opts.prefix,
    LOG_LEVEL: "warn",
    ...opts.env,
  };
  const child = spawn(process.execPath, ["--conditions=@pi-fleet/source", "apps/all/src/main.ts"], {
    cwd: repoRoot,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const collect = (chunk: Buffer): void => {
    output += chunk.toString("utf8");
    if (output.length > MAX_LOG_CHARS) output = output.slice(-MAX_LOG_CHARS);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  let spawnError: Error | undefined;
  child.once("error", (err) => {
    spawnError = err;
  });
  const exit = new Promise<number | null>((resolveExit) => {
    child.once("exit", (code) => resolveExit(code));
  });
  const dog = child.pid === undefined ? undefined : spawnWatchdog(child.pid, ownedRoot ?? "");

  let halting: Promise<number | null> | undefined;
  const halt = (signal: NodeJS.Signals, graceMs: number): Promise<number | null> => {
    halting ??= (async () => {
      if (!exited(child)) child.kill(signal);
      const timer = setTimeout(() => {
        if (!exited(child)) child.kill("SIGKILL");
      }, graceMs);
      const code = await exit;
      clearTimeout(timer);
      dog?.stdin?.end("done\n");
      live.delete(stack);
      return code;
    })();
    return halting;
  };
  let stopping: Promise<number | null> | undefined;
  const url = `http://127.0.0.1:${port}`;
  const stack: Stack = {
    url,
    port,
    workspaceDir,
    child,
    logs: () => output,
    stop(signal: NodeJS.Signals = "SIGTERM", graceMs = 45_000) {
      stopping ??= (async () => {
        const code = await halt(signal, graceMs);
        await afterExit();
        return code;
      })();
      return stopping;
    },
    async kill() {
      await stack.stop("SIGKILL");
    },
  };
  live.add(stack);

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  for (;;) {
    if (spawnError || exited(child)) {
      const code = await halt("SIGKILL", 0);
      const why = spawnError ? `could not spawn: ${spawnError.message}` : `exited with code ${code}`;
      const message = `pi-fleet single-node process ${why} before it was ready\n--- output ---\n${output}`;
      if (/EADDRINUSE/.test(output)) throw new PortTakenError(message);
      throw new Error(message);
    }
    if (await probeReady(url)) return stack;
    if (Date.now() > deadline) {
      await halt("SIGKILL", 0);
      throw new Error(
        `pi-fleet was not ready at ${url}/v1/readyz within the timeout\n--- output ---\n${output}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Spawns `node --conditions=@pi-fleet/source apps/all/src/main.ts` (what `npm start` runs) with a
 * minimal environment and resolves once `GET /v1/readyz` answers 200. Rejects, with the process
 * output, if it exits or is not ready in time (the process is then gone).
 */
export async function startStack(opts: StackOptions): Promise<Stack> {
  let ownedRoot: string | undefined;
  let workspaceDir = opts.workspaceDir;
  if (workspaceDir === undefined) {
    ownedRoot = await mkdtemp(join(tmpdir(), "pi-fleet-e2e-"));
    workspaceDir = join(ownedRoot, "workspace");
  }
  // A private HOME next to the workspace: nothing the process does touches the real one.
  const home = join(resolve(workspaceDir, ".."), "home");
  await mkdir(home, { recursive: true });
  const removeOwned = async (): Promise<void> => {
    if (ownedRoot) await rm(ownedRoot, { recursive: true, force: true });
  };
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await findFreePort());
    try {
      return await launch(opts, port, workspaceDir, home, ownedRoot, removeOwned);
    } catch (err) {
      if (err instanceof PortTakenError && opts.port === undefined && attempt < 4) continue;
      await removeOwned();
      throw err;
    }
  }
}

/** Stops (SIGTERM, then SIGKILL after `graceMs`) every stack still running. For afterAll/afterEach. */
export async function stopAllStacks(graceMs = 15_000): Promise<void> {
  await Promise.all([...live].map((s) => s.stop("SIGTERM", graceMs)));
}
