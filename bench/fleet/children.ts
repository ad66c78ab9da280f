/**
 * The child processes of `bench/fleet.ts` (gateway, workers): spawned as real `node` processes,
 * tracked until they exit, and never left behind. `stopAll()` ends what is still running; an
 * `exit` hook SIGKILLs leftovers; and each child gets a tiny /bin/sh watchdog that SIGKILLs it if
 * the bench process itself dies without running its hooks (e.g. SIGKILL).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { log, nowNs } from "./util.ts";

/** A running (or exited) child. */
export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  /** Resolves on exit with the code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** Monotonic ns at which the exit was seen (set once exited). */
  exitedAtNs: bigint | undefined;
  /** True once the bench asked it to stop or killed it (its exit is expected). */
  expectExit: boolean;
  /** Last lines it wrote (stdout + stderr). */
  tail(): string[];
  /** Sends `signal` (the exit is expected) without waiting. */
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM, wait, SIGKILL after `graceMs`. Idempotent. */
  stop(graceMs?: number): Promise<number | null>;
}

const live = new Set<Child>();
let onUnexpectedExit: (child: Child, code: number | null, signal: NodeJS.Signals | null) => void = () => {};

/** Registers what happens when a child exits without the bench having asked for it. */
export function setUnexpectedExitHandler(fn: typeof onUnexpectedExit): void {
  onUnexpectedExit = fn;
}

const isRunning = (proc: ChildProcess): boolean => proc.exitCode === null && proc.signalCode === null;

process.once("exit", () => {
  for (const child of live) if (isRunning(child.proc)) child.proc.kill("SIGKILL");
});

// $1 = pid. Our stdin pipe reaching EOF without a "done" line means the bench died: SIGKILL the child.
const WATCHDOG_SCRIPT = `
read -r line
[ "$line" = done ] && exit 0
kill -KILL "$1" 2>/dev/null
exit 0
`;

function spawnWatchdog(pid: number): ChildProcess {
  const dog = spawn("/bin/sh", ["-c", WATCHDOG_SCRIPT, "bench-fleet-watchdog", String(pid)], {
    stdio: ["pipe", "ignore", "ignore"],
  });
  dog.stdin?.on("error", () => {});
  (dog.stdin as { unref?: () => void } | null)?.unref?.();
  dog.unref();
  return dog;
}

/**
 * Spawns `node --conditions=@pi-fleet/source <entry>` in `cwd` with exactly `env` (plus nothing
 * inherited), stdout/stderr captured (the last 40 lines kept for errors; every line also appended
 * to `$BENCH_LOG_DIR/<name>.log` when that directory is set, e.g. with `LOG_LEVEL=debug`).
 */
export function spawnNode(name: string, entry: string, cwd: string, env: NodeJS.ProcessEnv): Child {
  const proc = spawn(process.execPath, ["--conditions=@pi-fleet/source", entry], {
    cwd,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const logDir = process.env.BENCH_LOG_DIR;
  const keep = (chunk: Buffer): void => {
    if (logDir) appendFileSync(join(logDir, `${name}.log`), chunk);
    for (const line of chunk.toString("utf8").split("\n")) {
      if (line.trim() === "") continue;
      lines.push(line);
      if (lines.length > 40) lines.shift();
    }
  };
  proc.stdout?.on("data", keep);
  proc.stderr?.on("data", keep);
  proc.once("error", (err) => lines.push(`spawn error: ${err.message}`));
  const dog = proc.pid === undefined ? undefined : spawnWatchdog(proc.pid);
  let stopping: Promise<number | null> | undefined;
  const child: Child = {
    name,
    proc,
    exited: new Promise((resolve) => {
      proc.once("exit", (code, signal) => {
        child.exitedAtNs = nowNs();
        live.delete(child);
        dog?.stdin?.end("done\n");
        if (!child.expectExit) onUnexpectedExit(child, code, signal);
        resolve(code);
      });
    }),
    exitedAtNs: undefined,
    expectExit: false,
    tail: () => [...lines],
    signal(signal) {
      child.expectExit = true;
      if (isRunning(proc)) proc.kill(signal);
    },
    stop(graceMs = 20_000) {
      stopping ??= (async () => {
        child.signal("SIGTERM");
        const timer = setTimeout(() => {
          if (isRunning(proc)) {
            log(`${name} did not exit within ${graceMs / 1000} s of SIGTERM; sending SIGKILL`);
            proc.kill("SIGKILL");
          }
        }, graceMs);
        const code = await child.exited;
        clearTimeout(timer);
        return code;
      })();
      return stopping;
    },
  };
  live.add(child);
  return child;
}

/** Stops every child still running (in parallel). */
export async function stopAll(graceMs = 20_000): Promise<void> {
  await Promise.all([...live].map((c) => c.stop(graceMs)));
}
