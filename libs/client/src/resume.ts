/** Resume bookkeeping shared by the SSE and WebSocket helpers: offsets, cursors and backoff. */
import type { ReconnectOptions, StreamItem, WireEvent } from "./types.ts";

const OFFSET_RE = /^(\d+)-(\d+)$/;

function compareDigits(a: string, b: string): number {
  const x = a.replace(/^0+(?=\d)/, "");
  const y = b.replace(/^0+(?=\d)/, "");
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * Orders two stream offsets (`<ms>-<seq>`, or `"0"` = before everything): negative when `a` comes
 * first, 0 when equal, positive when `a` comes after `b`. Numeric, so `"9-0" < "10-0"`.
 */
export function compareOffsets(a: string, b: string): number {
  if (a === b) return 0;
  if (a === "0") return -1;
  if (b === "0") return 1;
  const ma = OFFSET_RE.exec(a);
  const mb = OFFSET_RE.exec(b);
  if (!ma || !mb) return a < b ? -1 : 1;
  return compareDigits(ma[1]!, mb[1]!) || compareDigits(ma[2]!, mb[2]!);
}

/**
 * The resume cursor of one stream: the offset of the last item delivered. Filters duplicates
 * (offsets at or before the cursor, as replays after a reconnect may overlap) and handles
 * `stream_reset`, after which the cursor is `"0"` (everything the stream now retains; offsets
 * may restart lower when Redis lost the stream).
 */
export class Cursor {
  offset: string | undefined;

  constructor(after: string | undefined) {
    this.offset = after;
  }

  /**
   * Seeds a live-only cursor (no offset yet) with the offset the gateway says the stream started
   * after, so a reconnect before the first event resumes from there. Ignored once an offset is known.
   */
  seed(offset: string): void {
    if (this.offset === undefined && offset !== "") this.offset = offset;
  }

  /** The item to deliver for an incoming event, or undefined to drop it (duplicate, lagging). */
  accept(offset: string | undefined, event: WireEvent): StreamItem | undefined {
    if (event.type === "stream_lagging") return undefined;
    if (event.type === "stream_reset") {
      this.offset = "0";
      return { event };
    }
    if (offset === undefined) return { event };
    if (this.offset !== undefined && compareOffsets(offset, this.offset) <= 0) return undefined;
    this.offset = offset;
    return { offset, event };
  }
}

/** True when `value` is a JSON object with a string `type`. */
export function isWireEvent(value: unknown): value is WireEvent {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    typeof (value as { type?: unknown }).type === "string"
  );
}

/** The delay before reconnect attempt `attempt` (0-based): jittered, capped exponential backoff. */
export function backoffDelay(attempt: number, opts: ReconnectOptions = {}, random = Math.random): number {
  const initial = Math.max(0, opts.initialDelayMs ?? 250);
  const max = Math.max(initial, opts.maxDelayMs ?? 30_000);
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** Resolves after `ms`, or as soon as `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Milliseconds named by a `Retry-After` header (seconds or an HTTP date), or 0. */
export function retryAfterMs(header: string | null, now = Date.now()): number {
  if (!header) return 0;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? 0 : Math.max(0, date - now);
}
