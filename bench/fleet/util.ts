/**
 * Small shared pieces of `bench/fleet.ts`: environment variables, logging, the shared monotonic
 * clock, statistics and number formatting.
 */
import { arch, cpus, platform, release, totalmem } from "node:os";

/** A failure whose message says it all (no stack trace printed). */
export class BenchAbort extends Error {}

export function log(message: string): void {
  process.stderr.write(`[bench:fleet] ${message}\n`);
}

/** An integer environment variable ≥ `min`, or `fallback` when unset; exits 2 when invalid. */
export function intFromEnv(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`bench: ${name} must be an integer >= ${min} (got ${JSON.stringify(raw)})\n`);
    process.exit(2);
  }
  return n;
}

/**
 * Now on the machine-wide monotonic clock (CLOCK_MONOTONIC on Linux), in ns. The gateway stamps
 * `RunJobData.enqueuedAtNs` with the same clock, so stamps of different processes compare.
 */
export const nowNs = (): bigint => process.hrtime.bigint();

/** `b − a` in ms (float). */
export const msBetween = (a: bigint, b: bigint): number => Number(b - a) / 1e6;

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Races `promise` against a timer; rejects with a message naming `what`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `check` every `everyMs` until it returns a value, or throws after `timeoutMs`. */
export async function pollUntil<T>(
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  what: string,
  everyMs = 5,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Statistics.

export interface Stats {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: readonly number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] ?? Number.NaN;
}

export function stats(samples: readonly number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    mean: sorted.reduce((sum, x) => sum + x, 0) / sorted.length,
    min: sorted[0] ?? Number.NaN,
    max: sorted[sorted.length - 1] ?? Number.NaN,
  };
}

/** Median (nearest-rank p50). */
export const median = (samples: readonly number[]): number => stats(samples).p50;

// ---------------------------------------------------------------------------------------------
// Formatting.

export const ms = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(2)} ms` : "n/a");
export const signedMs = (x: number): string => `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(2)} ms`;
export const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;
export const seconds = (x: number): string => `${(x / 1000).toFixed(2)} s`;

export function environment(): string {
  const cpuList = cpus();
  const model = cpuList[0]?.model.trim() ?? "unknown CPU";
  const memGiB = (totalmem() / 1024 ** 3).toFixed(1);
  return `Node ${process.version}, ${cpuList.length} × ${model}, ${platform()} ${release()} ${arch()}, ${memGiB} GiB RAM`;
}
