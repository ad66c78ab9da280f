// Starts one redis-server process under a tiny /bin/sh watchdog, so the server dies with the
// test process even when that process is SIGKILLed (vitest forks never run `exit` hooks), and
// waits until it answers PING. spawnRedis (redis-server.ts) builds on this.

import { type ChildProcess, spawn } from "node:child_process";
import { waitForRedisPing } from "./redis-ping.ts";

const OUTPUT_TAIL_CHARS = 4000;

// $1 = dir to delete if the parent dies ("" for none), $2 = redis-server binary, rest = its args.
// Reports redis' pid on fd 3, then waits for it and exits with its status. A background reader
// holds our stdin pipe: when the Node parent dies the pipe hits EOF and the reader SIGTERMs redis;
// once redis is gone and the parent ($PPID) is gone too, the temp dir is removed.
// (Asynchronous lists get /dev/null as stdin, hence the copy of stdin on fd 4.)
const WATCHDOG_SCRIPT = `
exec 4<&0
cleanup="$1"; bin="$2"; shift 2
"$bin" "$@" </dev/null 3>&- 4<&- &
pid=$!
echo "$pid" >&3
exec 3>&-
(read -r _line <&4; kill -TERM "$pid" 2>/dev/null) &
watcher=$!
exec 4<&-
wait "$pid"
code=$?
kill "$watcher" 2>/dev/null
if [ -n "$cleanup" ] && ! kill -0 "$PPID" 2>/dev/null; then rm -rf -- "$cleanup"; fi
exit "$code"
`;

/** A started redis-server: `pid` is redis itself; `watchdog` is the /bin/sh parent whose exit mirrors redis'. */
export interface RedisProcess {
  readonly pid: number;
  readonly watchdog: ChildProcess;
  /** True once redis has exited (the watchdog exits right after it). */
  exited(): boolean;
  /** Sends `signal` to redis itself (not the watchdog); a no-op once it has exited. */
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM, wait for exit, SIGKILL after `graceMs` (default 10000). Resolves once gone. */
  terminate(graceMs?: number): Promise<void>;
}

/** Thrown by {@link startRedisProcess} when redis-server reports its port is already taken. */
export class PortInUseError extends Error {
  override name = "PortInUseError";
}

/**
 * Spawns `bin args...` under the watchdog and resolves once `127.0.0.1:port` answers PING.
 * `orphanCleanupDir` (if non-empty) is deleted by the watchdog only when the Node process dies.
 * Rejects (after killing the process) with {@link PortInUseError} when the port is taken, or an
 * Error carrying the tail of redis-server's log for any other startup failure or a 10 s timeout.
 */
export async function startRedisProcess(
  bin: string,
  args: string[],
  port: number,
  orphanCleanupDir = "",
): Promise<RedisProcess> {
  const watchdog = spawn(
    "/bin/sh",
    ["-c", WATCHDOG_SCRIPT, "redis-watchdog", orphanCleanupDir, bin, ...args],
    {
      stdio: ["pipe", "pipe", "pipe", "pipe"],
    },
  );
  let output = "";
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString("utf8")).slice(-OUTPUT_TAIL_CHARS);
  };
  watchdog.stdout?.on("data", collect);
  watchdog.stderr?.on("data", collect);
  let spawnError: Error | undefined;
  watchdog.once("error", (err) => {
    spawnError = err;
  });
  // Swallow EPIPE if the watchdog is gone; the pipe only exists to signal our own death.
  watchdog.stdin?.on("error", () => {});

  let pid = 0;
  const pidReported = new Promise<void>((resolve) => {
    const pipe = watchdog.stdio[3];
    if (!pipe || !("on" in pipe)) return;
    let buf = "";
    pipe.on("data", (chunk: Buffer) => {
      buf += chunk.toString("utf8");
      const n = Number.parseInt(buf, 10);
      if (buf.includes("\n") && n > 0) {
        pid = n;
        resolve();
      }
    });
  });

  const exited = (): boolean => watchdog.exitCode !== null || watchdog.signalCode !== null;
  const proc: RedisProcess = {
    get pid() {
      return pid;
    },
    watchdog,
    exited,
    signal(signal) {
      if (exited()) return;
      if (pid <= 0) {
        watchdog.kill(signal);
        return;
      }
      try {
        process.kill(pid, signal);
      } catch (err) {
        // Already gone (the watchdog just has not exited yet): nothing to signal.
        if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
      }
    },
    async terminate(graceMs = 10_000) {
      if (watchdog.pid === undefined || exited()) return;
      const gone = new Promise<void>((resolve) => watchdog.once("exit", () => resolve()));
      proc.signal("SIGTERM");
      const timer = setTimeout(() => proc.signal("SIGKILL"), graceMs);
      await gone;
      clearTimeout(timer);
      watchdog.stdin?.destroy();
    },
  };

  try {
    await waitForRedisPing(port, {
      shouldAbort: () => {
        if (spawnError) return `failed to start /bin/sh for ${bin}: ${spawnError.message}`;
        if (exited()) return `redis-server exited (status ${watchdog.exitCode ?? watchdog.signalCode})`;
        return undefined;
      },
    });
    const noPid = new Promise<"timeout">((resolve) => setTimeout(resolve, 2000, "timeout").unref());
    if ((await Promise.race([pidReported, noPid])) === "timeout") {
      throw new Error("redis-server answered PING but the watchdog never reported its pid");
    }
    return proc;
  } catch (err) {
    await proc.terminate(2000);
    const detail = `${(err as Error).message}\n--- redis-server output ---\n${output.trim()}`;
    if (/address already in use/i.test(output)) throw new PortInUseError(detail);
    throw new Error(detail);
  }
}
