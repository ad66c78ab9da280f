/**
 * One SSE response over a subscription (API.md "Event stream"): `retry:` once, frames
 * `id: <offset>\ndata: <json>\n\n`, a comment heartbeat, `stream_reset` frames without an id (the
 * client keeps its cursor semantics). Frames produced in one I/O turn are coalesced into one
 * write. Backpressure: while replaying, the subscription waits for the socket to drain
 * (`congested()`); live, a client whose unsent bytes exceed the bound gets a final
 * `stream_lagging` event and is closed — it resumes with its last id. A stream whose session or
 * project was deleted gets a final `stream_ended` event (no id) and is closed.
 */
import type { ServerResponse } from "node:http";
import type { ResetReason, StreamEntry, SubscriptionSink } from "@pi-fleet/streams";
import { takenBy, waitForDrain } from "../drain-wait.ts";
import { type Flushable, flushAfterTurn } from "./flush-scheduler.ts";

/** Options of one SSE stream. */
export interface SseOptions {
  heartbeatMs: number;
  /** Client reconnect delay announced with `retry:` (ms). */
  retryMs: number;
  /** Max unsent bytes buffered for this client before it is cut with `stream_lagging`. */
  maxBufferedBytes: number;
}

/** Replay pauses while more than this is waiting in the socket (bytes; capped by the client limit / 4). */
const REPLAY_HIGH_WATER = 256 * 1024;
/** A replay that makes no progress for this long (ms) is cut with `stream_lagging`. */
const REPLAY_STALL_MS = 10_000;

/**
 * Writes a subscription to an HTTP response as SSE. Frames produced before `open()` (resets found
 * while subscribing, before the response head is sent) are held and flushed on open.
 */
export class SseStream implements SubscriptionSink, Flushable {
  private readonly res: ServerResponse;
  private readonly opts: SseOptions;
  private heartbeat: NodeJS.Timeout | undefined;
  private held: string[] | undefined = [];
  private pending = "";
  private flushScheduled = false;
  private lastId: string | undefined;
  private done = false;
  /** `ended()` came before `open()`: end right after the held frames went out. */
  private endOnOpen = false;
  /** Called once when the stream ends for any reason. */
  onEnd: () => void = () => {};
  /** Called when the subscription failed (a Redis read error). */
  onFailed: (err: unknown) => void = () => {};
  /** Called for each stream frame (event or reset) queued for the client (metrics). */
  onStreamFrame: () => void = () => {};
  /** Called when the client is cut with `stream_lagging` (metrics). */
  onLagging: () => void = () => {};

  constructor(res: ServerResponse, opts: SseOptions) {
    this.res = res;
    this.opts = opts;
    res.on("close", () => this.finish());
    // A client that hung up before this stream existed: its "close" has already fired.
    if (res.destroyed) queueMicrotask(() => this.finish());
  }

  /**
   * Sends `retry:` and the frames held so far, then writes through. Call after the head is sent.
   * @param startOffset for a live-only client, the offset it starts after: sent as the `id:` of
   *   the `retry:` frame (no data), so a reconnect before its first event resumes from it
   *   (EventSource keeps it as its last event id; the SDK seeds its cursor).
   */
  open(startOffset?: string): void {
    const held = this.held ?? [];
    this.held = undefined;
    this.frame(`retry: ${this.opts.retryMs}\n${startOffset === undefined ? "" : `id: ${startOffset}\n`}\n`);
    for (const frame of held) this.frame(frame);
    if (this.endOnOpen) {
      this.end();
      return;
    }
    this.heartbeat = setInterval(() => this.frame(": heartbeat\n\n"), this.opts.heartbeatMs);
    this.heartbeat.unref();
  }

  entry(entry: StreamEntry): void {
    this.onStreamFrame();
    this.frame(`id: ${entry.id}\ndata: ${entry.data}\n\n`, entry.id);
  }

  reset(reason: ResetReason, firstOffset: string): void {
    this.onStreamFrame();
    this.frame(`data: ${JSON.stringify({ type: "stream_reset", reason, firstOffset })}\n\n`);
  }

  failed(err: unknown): void {
    this.onFailed(err);
    this.end();
  }

  /** The stream's session or project was deleted: its final `stream_ended` event, then the end. */
  ended(data: string): void {
    this.onStreamFrame();
    this.frame(`data: ${data}\n\n`);
    if (this.held) this.endOnOpen = true;
    else this.end();
  }

  congested(): Promise<void> | undefined {
    const highWater = Math.min(REPLAY_HIGH_WATER, Math.floor(this.opts.maxBufferedBytes / 4));
    if (this.done || this.res.writableLength + this.pending.length <= highWater) return undefined;
    this.flush();
    if (this.res.writableLength <= highWater || this.res.destroyed) return undefined;
    const socket = this.res.socket;
    return waitForDrain({
      buffered: () => this.res.writableLength,
      taken: () => (socket ? takenBy(socket) : 0),
      highWater,
      drains: [this.res],
      closes: [this.res],
      ended: () => this.done || this.res.destroyed,
      // Not reading at all during a replay: cut it like a lagging live client.
      stallMs: REPLAY_STALL_MS,
      onStall: () => this.cut(),
    });
  }

  /** Queues one raw SSE frame (coalesced with the others of this I/O turn); `id` = its offset, if any. */
  frame(chunk: string, id?: string): void {
    if (this.done) return;
    if (this.held) {
      this.held.push(chunk);
      return;
    }
    // Lagging = bytes Node could not hand to the kernel (the client does not read), not what this
    // turn is still coalescing.
    if (this.res.writableLength > this.opts.maxBufferedBytes) {
      this.cut();
      return;
    }
    this.pending += chunk;
    if (id !== undefined) this.lastId = id;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      flushAfterTurn(this);
    }
  }

  /** Cuts a client that does not keep up: a final `stream_lagging`, then the end; it resumes with its last id. */
  private cut(): void {
    if (this.done) return;
    this.onLagging();
    this.flush(); // what this turn queued goes first, so `lastOffset` names the last frame sent
    this.res.write(
      `data: ${JSON.stringify({ type: "stream_lagging", lastOffset: this.lastId ?? null })}\n\n`,
    );
    this.end();
  }

  /** Ends the response (shutdown or failure) after what is queued. */
  end(): void {
    if (this.done) return;
    this.flush();
    this.finish();
    this.res.end();
  }

  /** Writes this turn's frames with one `res.write`. */
  flush(): void {
    this.flushScheduled = false;
    if (this.pending === "" || this.res.destroyed) return;
    const chunk = this.pending;
    this.pending = "";
    this.res.write(chunk);
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    clearInterval(this.heartbeat);
    this.onEnd();
  }
}
