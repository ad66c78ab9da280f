// Spawns throwaway redis-server processes on loopback for tests that need a real Redis without
// Docker (and never the developer's own Redis on 6379). Supports stop/kill/restart on the same
// port and data dir so durability and reconnect behaviour can be exercised.

import { accessSync, constants as fsConstants } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { findFreePort } from "./free-port.ts";
import { PortInUseError, type RedisProcess, startRedisProcess } from "./redis-process.ts";

/** Options for {@link spawnRedis}. `dir` defaults to a fresh temp dir (deleted by `stop()`). */
export interface SpawnRedisOptions {
  /** `--appendonly yes` when true (default false), so data survives `restart()` / `kill()`. */
  appendonly?: boolean;
  /** Working/data directory; a caller-provided dir is never deleted. */
  dir?: string;
  /** Extra redis-server arguments appended verbatim, e.g. `["--maxmemory", "64mb"]`. */
  extraArgs?: string[];
}

/**
 * A redis-server process bound to 127.0.0.1. `url` is `redis://127.0.0.1:PORT`; `pid` is the
 * redis-server process id (changes after `restart()`). The server is SIGTERMed automatically if
 * the Node process that spawned it dies, even by SIGKILL (and its temp dir is then removed), so
 * crashed or forgetful test runs leave no orphans.
 */
export interface SpawnedRedis {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  readonly pid: number;
  /** SIGTERM, wait for exit (SIGKILL after 10 s), then delete the temp dir if we created it. Idempotent. */
  stop(): Promise<void>;
  /** Sends `signal` (default SIGKILL, i.e. a crash) without waiting; `restart()` can follow. */
  kill(signal?: NodeJS.Signals): void;
  /** Stops the process if running and starts a new one on the same port and dir; waits for PING. */
  restart(): Promise<void>;
}

const MAX_PORT_ATTEMPTS = 5;

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Locates the redis-server binary: `REDIS_SERVER_BIN` if set, else the first `redis-server` on
 * PATH. Throws an Error explaining how to install it (or use REDIS_URL) when none is found.
 */
export function findRedisServerBinary(): string {
  const fromEnv = process.env.REDIS_SERVER_BIN;
  if (fromEnv) {
    if (isExecutable(fromEnv)) return fromEnv;
    throw new Error(`REDIS_SERVER_BIN=${fromEnv} is not an executable file`);
  }
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, "redis-server");
    if (isExecutable(candidate)) return candidate;
  }
  throw new Error(
    "redis-server binary not found on PATH. Install it (Debian/Ubuntu: `apt-get install redis-server`, " +
      "macOS: `brew install redis`), point REDIS_SERVER_BIN at it, or set REDIS_URL to an existing Redis.",
  );
}

function redisArgs(port: number, dir: string, opts: SpawnRedisOptions): string[] {
  return [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    opts.appendonly ? "yes" : "no",
    "--dir",
    dir,
    "--protected-mode",
    "no",
    "--daemonize",
    "no",
    ...(opts.extraArgs ?? []),
  ];
}

/**
 * Spawns `redis-server --port <free> --bind 127.0.0.1 --save "" --appendonly <yes|no> --dir <dir>
 * --protected-mode no` (foreground) and resolves once it answers PING. Retries with a new port
 * up to 5 times when the free-port race is lost. Throws if the binary is missing (see
 * {@link findRedisServerBinary}) or the server fails to start (message includes its log tail).
 */
export async function spawnRedis(opts: SpawnRedisOptions = {}): Promise<SpawnedRedis> {
  const bin = findRedisServerBinary();
  const ownsDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), "pi-fleet-redis-")));

  let child: RedisProcess | undefined;
  let port = 0;
  let lastError: unknown;
  for (let attempt = 0; attempt < MAX_PORT_ATTEMPTS && !child; attempt++) {
    port = await findFreePort();
    try {
      child = await startRedisProcess(bin, redisArgs(port, dir, opts), port, ownsDir ? dir : "");
    } catch (err) {
      lastError = err;
      if (!(err instanceof PortInUseError)) break;
    }
  }
  if (!child) {
    if (ownsDir) await rm(dir, { recursive: true, force: true });
    throw lastError instanceof Error ? lastError : new Error(String(lastError));
  }

  let current: RedisProcess = child;
  let stopped = false;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    get pid() {
      return current.pid;
    },
    kill(signal: NodeJS.Signals = "SIGKILL") {
      current.signal(signal);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await current.terminate();
      if (ownsDir) await rm(dir, { recursive: true, force: true });
    },
    async restart() {
      if (stopped) throw new Error("restart() after stop(): the redis-server dir may be gone");
      await current.terminate();
      // The old socket is released on exit, but retry briefly in case the kernel lags.
      let err: unknown;
      for (let attempt = 0; attempt < MAX_PORT_ATTEMPTS; attempt++) {
        try {
          current = await startRedisProcess(bin, redisArgs(port, dir, opts), port, ownsDir ? dir : "");
          return;
        } catch (e) {
          err = e;
          if (!(e instanceof PortInUseError)) break;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      throw err instanceof Error ? err : new Error(String(err));
    },
  };
}
