// Runs the bash tool's commands: a fresh process group per command, a minimal env (the
// worker's secrets never reach tenant commands, hazard H3), and a per-command time cap (hazard
// H5), either on the host or inside bubblewrap (sandbox.ts). Every process group a session
// started is killed on abort and when the session is disposed.
import { type ChildProcess, spawn } from "node:child_process";
import { constants as osConstants } from "node:os";
import type { BashOperations } from "@earendil-works/pi-coding-agent";
import { bwrapInvocation } from "./sandbox.ts";

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
  /**
   * Run every command inside bubblewrap (sandbox.ts) instead of on the host: `cwd` is the
   * project dir mounted read-write, `tmpDir` the sandbox's /tmp, `env` its complete env.
   */
  sandbox?: { bwrapPath: string; tmpDir: string; network: boolean };
}

/** BashOperations that also own the process groups they started. */
export interface ManagedBashOperations extends BashOperations {
  /**
   * SIGKILL to every process group a command of these operations started that may still have
   * members (background children of finished commands, on the host). Call on session dispose;
   * later commands still run. Idempotent.
   */
  killAll(): void;
}

/**
 * BashOperations for pi's bash tool that spawn `<shell> -c <command>` detached (own process
 * group) with only `options.env`, on the host or (with `options.sandbox`) as
 * `bwrap … -- <shell> -c <command>`. Output (stdout and stderr) streams through onData. On
 * abort, every process group these operations started gets SIGKILL (the running command's and
 * background children left by earlier commands); when the cap hits, the command's group does.
 * `exec` then rejects with `Error("aborted")` or `Error("timeout:<seconds>")`, the messages pi's
 * bash tool turns into "Command aborted" / "Command timed out after N seconds". A signal death
 * resolves as exit code 128 + signal number (bwrap passes its child's status through). Spawn
 * failures (missing shell, bwrap or cwd) reject with the spawn error.
 * On the host a `setsid` child leaves the group and survives the kill; in the sandbox the PID
 * namespace ends with the command, so no process outlives it there.
 */
export function createHostBashOperations(options: HostBashOptions): ManagedBashOperations {
  const shell = options.shellPath ?? "/bin/bash";
  /** Leaders (= process group ids) of commands whose group may still have members. */
  const groups = new Set<number>();
  const prune = () => {
    for (const pgid of groups) if (!groupAlive(pgid)) groups.delete(pgid);
  };
  const killAll = () => {
    for (const pgid of groups) killGroup(pgid);
    groups.clear();
  };
  return {
    killAll,
    exec: async (command, _cwd, { onData, signal, timeout }) => {
      const timeoutMs = effectiveTimeoutMs(timeout, options.maxTimeoutMs);
      if (signal?.aborted) throw new Error("aborted");
      prune();
      const child = spawnCommand(shell, command, options);
      if (child.pid !== undefined) groups.add(child.pid);
      let timedOut = false;
      const onAbort = () => {
        killProcessGroup(child);
        killAll();
      };
      const timer = setTimeout(() => {
        timedOut = true;
        killProcessGroup(child);
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
        if (child.pid !== undefined && !groupAlive(child.pid)) groups.delete(child.pid);
      }
    },
  };
}

/** Spawns the command detached (its own process group), on the host or inside bwrap. */
function spawnCommand(shell: string, command: string, options: HostBashOptions): ChildProcess {
  if (!options.sandbox) {
    return spawn(shell, ["-c", command], {
      cwd: options.cwd,
      env: options.env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
  }
  const { bwrapPath, tmpDir, network } = options.sandbox;
  const inv = bwrapInvocation(
    { bwrapPath, projectDir: options.cwd, tmpDir, env: options.env, network },
    shell,
    command,
  );
  // bwrap itself gets an empty env (--clearenv then --setenv builds the command's).
  const child = spawn(inv.file, inv.args, {
    cwd: options.cwd,
    env: {},
    detached: true,
    stdio: ["ignore", "pipe", "pipe", ...inv.fdData.map(() => "pipe" as const)],
  });
  inv.fdData.forEach((data, i) => {
    const pipe = child.stdio[3 + i];
    if (pipe && "end" in pipe) {
      pipe.on("error", () => {}); // bwrap failed before reading it: the exit code reports that
      pipe.end(data);
    }
  });
  return child;
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
  if (!killGroup(child.pid)) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** SIGKILL to process group `pgid`; false when there is no such group. */
function killGroup(pgid: number): boolean {
  try {
    process.kill(-pgid, "SIGKILL");
    return true;
  } catch {
    return false;
  }
}

/** Whether process group `pgid` still has a member (EPERM counts: something exists). */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
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
