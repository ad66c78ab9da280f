/**
 * Small shared pieces of `bench/stream.ts` and its child processes: environment variables,
 * logging, the shared monotonic clock and formatting.
 */
import { arch, cpus, platform, release, totalmem } from "node:os";

/** A failure whose message says it all (no stack trace printed). */
export class BenchAbort extends Error {}

export function log(message: string): void {
  process.stderr.write(`[bench:stream] ${message}\n`);
}

function invalid(name: string, what: string, raw: string): never {
  process.stderr.write(`bench: ${name} must be ${what} (got ${JSON.stringify(raw)})\n`);
  process.exit(2);
}

/** An integer environment variable ≥ `min`, or `fallback` when unset; exits 2 when invalid. */
export function intFromEnv(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) invalid(name, `an integer >= ${min}`, raw);
  return n;
}

/**
 * A comma-separated list of positive integers, or `fallback` when unset. "0" or "none" is the
 * empty list (skip that part of the bench); exits 2 when invalid.
 */
export function listFromEnv(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  if (raw === "0" || raw === "none") return [];
  const items = raw.split(",").map((s) => Number(s.trim()));
  if (items.some((n) => !Number.isInteger(n) || n < 1)) {
    invalid(name, 'a comma-separated list of positive integers, or "none"', raw);
  }
  return items;
}

/**
 * Now on the machine-wide monotonic clock (`process.hrtime`, CLOCK_MONOTONIC on Linux) in µs.
 * Every process on the host reads the same clock, so a stamp taken by the producer and one taken
 * by a client compare directly.
 */
export const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Races `promise` against a timer; rejects with a message naming `what`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Runs `fn` over `items` with at most `limit` calls in flight. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---------------------------------------------------------------------------------------------
// Formatting.

export const fmtMs = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(x < 100 ? 2 : 0)} ms` : "n/a");

/** An integer with thin thousands separators: 50,000. */
export const fmtInt = (x: number): string =>
  Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "n/a";

/** CPU seconds per wall second as a percentage of one core. */
export const fmtCores = (cores: number | undefined): string =>
  cores === undefined || !Number.isFinite(cores) ? "n/a" : `${Math.round(cores * 100)} %`;

export const fmtMiB = (bytes: number | undefined): string =>
  bytes === undefined || !Number.isFinite(bytes) ? "n/a" : `${(bytes / 1024 ** 2).toFixed(0)} MiB`;

export const fmtKiB = (bytes: number): string =>
  Number.isFinite(bytes) ? `${(bytes / 1024).toFixed(1)} KiB` : "n/a";

export function environment(): string {
  const cpuList = cpus();
  const model = cpuList[0]?.model.trim() ?? "unknown CPU";
  const memGiB = (totalmem() / 1024 ** 3).toFixed(1);
  return `Node ${process.version}, ${cpuList.length} × ${model}, ${platform()} ${release()} ${arch()}, ${memGiB} GiB RAM`;
}
