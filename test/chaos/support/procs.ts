// Real child processes for chaos tests: `node --conditions=@pi-fleet/source <entry>` with a
// minimal environment. Every child is tracked (`stopAllProcs()` for afterAll/afterEach), an
// `exit` hook SIGKILLs leftovers, and a /bin/sh sidecar SIGKILLs the child if the test process
// itself dies (vitest forks can be SIGKILLed without running hooks). Output is kept (tail) so a
// failing test can print it.

import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (cwd of every child). */
export const repoRoot: string = resolve(fileURLToPath(new URL("../../..", import.meta.url)));

/** How a child ended. `at` is `Date.now()` when the exit was observed. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
}

/** A spawned node process. */
export interface NodeProc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** `Date.now()` at spawn. */
  readonly startedAt: number;
  /** Resolves when the process has exited. */
  readonly exit: Promise<ExitInfo>;
  alive(): boolean;
  exitInfo(): ExitInfo | undefined;
  /** Sends a signal (no-op once exited). */
  signal(sig: NodeJS.Signals): void;
  /**
   * Sends `sig` (default SIGTERM; a stopped process is also SIGCONTed so it can handle it), waits
   * for the exit, SIGKILLs after `graceMs` (default 20 s). Idempotent per call.
   */
  stop(sig?: NodeJS.Signals, graceMs?: number): Promise<ExitInfo>;
  /** Everything it wrote to stdout/stderr (tail). */
  logs(): string;
}

const MAX_LOG_CHARS = 2 * 1024 * 1024;
const live = new Set<NodeProc>();

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

// $1 = pid. Our stdin pipe reaching EOF without a "done" line means the test process died:
// SIGKILL the child (SIGKILL also ends a SIGSTOPped process).
const WATCHDOG_SCRIPT = `
read -r line
[ "$line" = done ] && exit 0
kill -KILL "$1" 2>/dev/null
exit 0
`;

function spawnWatchdog(pid: number): ChildProcess {
  const dog = spawn("/bin/sh", ["-c", WATCHDOG_SCRIPT, "chaos-watchdog", String(pid)], {
    stdio: ["pipe", "ignore", "ignore"],
  });
  dog.stdin?.on("error", () => {});
  (dog.stdin as { unref?: () => void } | null)?.unref?.();
  dog.unref();
  return dog;
}

/** Spawns `node --conditions=@pi-fleet/source <entry>` in the repo root with exactly `env`. */
export function spawnNode(entry: string, name: string, env: Record<string, string>): NodeProc {
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
      info = { code, signal, at: Date.now() };
      resolveExit(info);
    });
  });
  const dog = spawnWatchdog(pid);
  const proc: NodeProc = {
    name,
    child,
    pid,
    startedAt: Date.now(),
    exit,
    alive: () => info === undefined,
    exitInfo: () => info,
    signal(sig) {
      if (info) return;
      try {
        process.kill(pid, sig);
      } catch {
        // exited meanwhile
      }
    },
    async stop(sig = "SIGTERM", graceMs = 20_000) {
      if (info) return info;
      proc.signal(sig);
      if (sig !== "SIGKILL") proc.signal("SIGCONT");
      const timer = setTimeout(() => proc.signal("SIGKILL"), graceMs);
      const done = await exit;
      clearTimeout(timer);
      return done;
    },
    logs: () => output,
  };
  void exit.then(() => {
    dog.stdin?.end("done\n");
    live.delete(proc);
  });
  live.add(proc);
  return proc;
}

/** Stops every live child: SIGTERM (+ SIGCONT), SIGKILL after `graceMs`. */
export async function stopAllProcs(graceMs = 5000): Promise<void> {
  await Promise.all([...live].map((p) => p.stop("SIGTERM", graceMs)));
}
