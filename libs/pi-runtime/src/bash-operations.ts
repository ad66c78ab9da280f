// Runs the bash tool's commands on the host: a fresh process group per command, a minimal env
// (the worker's secrets never reach tenant commands, hazard H3), and a per-command time cap
// (hazard H5). This is the seam where a sandboxed (bubblewrap) BashOperations slots in later.
import { type ChildProcess, spawn } from "node:child_process";
import { constants as osConstants } from "node:os";
import type { BashOperations } from "@earendil-works/pi-coding-agent";

/** PATH of the minimal bash env. */
export const MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin";
/** Default per-command cap: 10 minutes. */
export const DEFAULT_BASH_TIMEOUT_MS = 10 * 60 * 1000;
/** After the shell exits, how long quiet inherited pipes (background children) may stay open. */
const EXIT_STDIO_GRACE_MS = 100;

/**
 * The complete env of a bash command: PATH, HOME=projectDir, LANG, TERM=dumb, TMPDIR=tmpDir,
 * then `extra` (which may override any of them). Nothing is inherited from process.env.
 */
export function minimalBashEnv(
  projectDir: string,
  tmpDir: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return { PATH: MINIMAL_PATH, HOME: projectDir, LANG: "C.UTF-8", TERM: "dumb", TMPDIR: tmpDir, ...extra };
}

export interface HostBashOptions {
  /** Every command runs here, whatever cwd pi passes (the project dir). */
  cwd: string;
  /** The command's complete env (see minimalBashEnv); pi's env argument is ignored. */
  env: Record<string, string>;
  /** Cap in ms for every command; the model's own `timeout` (seconds) can only lower it. */
  maxTimeoutMs: number;
  /** Shell binary; default /bin/bash. Invoked as `<shell> -c <command>`. */
  shellPath?: string;
}

/**
 * BashOperations for pi's bash tool that spawn `<shell> -c <command>` detached (own process
 * group) with only `options.env`. Output (stdout and stderr) streams through onData. On abort
 * or when the cap hits, the whole process group gets SIGKILL; `exec` then rejects with
 * `Error("aborted")` or `Error("timeout:<seconds>")`, the messages pi's bash tool turns into
 * "Command aborted" / "Command timed out after N seconds". A signal death resolves as exit code
 * 128 + signal number. Spawn failures (missing shell or cwd) reject with the spawn error.
 */
export function createHostBashOperations(options: HostBashOptions): BashOperations {
  const shell = options.shellPath ?? "/bin/bash";
  return {
    exec: async (command, _cwd, { onData, signal, timeout }) => {
      const timeoutMs = effectiveTimeoutMs(timeout, options.maxTimeoutMs);
      if (signal?.aborted) throw new Error("aborted");
      const child = spawn(shell, ["-c", command], {
        cwd: options.cwd,
        env: options.env,
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let timedOut = false;
      const kill = () => killProcessGroup(child);
      const onAbort = () => kill();
      const timer = setTimeout(() => {
        timedOut = true;
        kill();
      }, timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      try {
        const exitCode = await waitForExit(child);
        if (signal?.aborted) throw new Error("aborted");
        if (timedOut) throw new Error(`timeout:${Math.round(timeoutMs / 1000)}`);
        const signo = child.signalCode ? osConstants.signals[child.signalCode] : undefined;
        return { exitCode: exitCode ?? (signo !== undefined ? 128 + signo : 1) };
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      }
    },
  };
}

/** min(model timeout in seconds, cap); throws like pi's bash tool on a non-positive timeout. */
function effectiveTimeoutMs(timeoutSeconds: number | undefined, capMs: number): number {
  if (timeoutSeconds === undefined) return capMs;
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) {
    throw new Error("Invalid timeout: must be a finite number of seconds");
  }
  return Math.min(timeoutSeconds * 1000, capMs);
}

/** SIGKILL to the child's process group (grandchildren included, except setsid ones). */
function killProcessGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}

/**
 * Resolves with the shell's exit code (null after a signal) once it exited and its pipes are
 * closed, or once they stayed quiet for EXIT_STDIO_GRACE_MS after the exit (a background child
 * may hold them open forever). Rejects on spawn errors.
 */
function waitForExit(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve, reject) => {
    let exited = false;
    let exitCode: number | null = null;
    let settled = false;
    let grace: NodeJS.Timeout | undefined;
    const finish = (code: number | null) => {
      if (settled) return;
      settled = true;
      if (grace) clearTimeout(grace);
      child.stdout?.destroy();
      child.stderr?.destroy();
      resolve(code);
    };
    const armGrace = () => {
      if (grace) clearTimeout(grace);
      grace = setTimeout(() => finish(exitCode), EXIT_STDIO_GRACE_MS);
    };
    child.stdout?.on("data", () => exited && armGrace());
    child.stderr?.on("data", () => exited && armGrace());
    child.once("error", (err) => {
      if (settled) return;
      settled = true;
      if (grace) clearTimeout(grace);
      reject(err);
    });
    child.once("exit", (code) => {
      exited = true;
      exitCode = code;
      armGrace();
    });
    child.once("close", (code) => finish(code ?? exitCode));
  });
}
