/**
 * The child processes of `bench/stream.ts` (gateway, producer, client processes): real `node`
 * processes, tracked until they exit and never left behind. `stopAll()` ends what is still
 * running; an `exit` hook SIGKILLs leftovers; and each child gets a tiny /bin/sh watchdog that
 * SIGKILLs it if the bench itself dies without running its hooks (e.g. SIGKILL).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { log } from "./util.ts";

/** A running (or exited) child. */
export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Resolves on exit. */
  readonly exited: Promise<void>;
  /** Last lines it wrote (stdout + stderr). */
  tail(): string[];
  /** SIGTERM, wait, SIGKILL after `graceMs`. Idempotent. */
  stop(graceMs?: number): Promise<void>;
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
  const dog = spawn("/bin/sh", ["-c", WATCHDOG_SCRIPT, "bench-stream-watchdog", String(pid)], {
    stdio: ["pipe", "ignore", "ignore"],
  });
  dog.stdin?.on("error", () => {});
  (dog.stdin as { unref?: () => void } | null)?.unref?.();
  dog.unref();
  return dog;
}

/** Options of {@link startNode}. */
export interface StartOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Open an IPC channel (child scripts that `serve()`). */
  ipc?: boolean;
  /** Extra node flags (before the entry). */
  nodeArgs?: string[];
}

/** Spawns `node --conditions=@pi-fleet/source [nodeArgs] <entry>`; stdout/stderr are captured. */
export function startNode(name: string, entry: string, opts: StartOptions): Child {
  const nodeArgv = ["--conditions=@pi-fleet/source", ...(opts.nodeArgs ?? []), entry];
  const stdio: ("ignore" | "pipe" | "ipc")[] = ["ignore", "pipe", "pipe"];
  if (opts.ipc) stdio.push("ipc");
  const proc = spawn(process.execPath, nodeArgv, { cwd: opts.cwd, env: opts.env, stdio });
  const lines: string[] = [];
  const keep = (chunk: Buffer): void => {
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
  let expectExit = false;
  let stopping: Promise<void> | undefined;
  const child: Child = {
    name,
    proc,
    pid: proc.pid ?? -1,
    exited: new Promise((resolve) => {
      proc.once("exit", (code, signal) => {
        live.delete(child);
        dog?.stdin?.end("done\n");
        if (!expectExit) onUnexpectedExit(child, code, signal);
        resolve();
      });
    }),
    tail: () => [...lines],
    stop(graceMs = 20_000) {
      stopping ??= (async () => {
        expectExit = true;
        if (!isRunning(proc)) return;
        proc.kill("SIGTERM");
        const timer = setTimeout(() => {
          if (isRunning(proc)) {
            log(`${name} did not exit within ${graceMs / 1000} s of SIGTERM; sending SIGKILL`);
            proc.kill("SIGKILL");
          }
        }, graceMs);
        await child.exited;
        clearTimeout(timer);
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
