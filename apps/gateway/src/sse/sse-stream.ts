/**
 * One SSE response over a session subscription (API.md "Event stream"): `retry:` once, frames
 * `id: <offset>\ndata: <json>\n\n`, a comment heartbeat, `stream_reset` frames without an id (the
 * client keeps its cursor semantics), and backpressure: when the socket's unsent bytes exceed the
 * bound, the client gets a final `stream_lagging` event and is closed; it resumes with its last id.
 */
import type { ServerResponse } from "node:http";
import type { ResetReason, StreamEntry, SubscriptionSink } from "@pi-fleet/streams";

/** Options of one SSE stream. */
export interface SseOptions {
  heartbeatMs: number;
  /** Client reconnect delay announced with `retry:` (ms). */
  retryMs: number;
  /** Max unsent bytes buffered for this client before it is cut with `stream_lagging`. */
  maxBufferedBytes: number;
}

/**
 * Writes a subscription to an HTTP response as SSE. Frames produced before `open()` (while the
 * subscription replays and before the response head is sent) are held and flushed on open.
 */
export class SseStream implements SubscriptionSink {
  private readonly res: ServerResponse;
  private readonly opts: SseOptions;
  private heartbeat: NodeJS.Timeout | undefined;
  private held: string[] | undefined = [];
  private lastId: string | undefined;
  private ended = false;
  private corked = false;
  /** Called once when the stream ends for any reason. */
  onEnd: () => void = () => {};

  constructor(res: ServerResponse, opts: SseOptions) {
    this.res = res;
    this.opts = opts;
    res.on("close", () => this.finish());
  }

  /** Sends `retry:` and the frames held so far, then writes through. Call after the head is sent. */
  open(): void {
    const held = this.held ?? [];
    this.held = undefined;
    this.res.write(`retry: ${this.opts.retryMs}\n\n`);
    for (const frame of held) this.write(frame);
    this.heartbeat = setInterval(() => this.write(": heartbeat\n\n"), this.opts.heartbeatMs);
    this.heartbeat.unref();
  }

  entry(entry: StreamEntry): void {
    this.lastId = entry.id;
    this.write(`id: ${entry.id}\ndata: ${entry.data}\n\n`);
  }

  reset(reason: ResetReason, firstOffset: string): void {
    this.write(`data: ${JSON.stringify({ type: "stream_reset", reason, firstOffset })}\n\n`);
  }

  failed(_err: unknown): void {
    this.end();
  }

  /** Ends the response (shutdown or failure). */
  end(): void {
    if (this.ended) return;
    this.finish();
    this.res.end();
  }

  private write(chunk: string): void {
    if (this.ended) return;
    if (this.held) {
      this.held.push(chunk);
      return;
    }
    if (this.res.writableLength > this.opts.maxBufferedBytes) {
      const lagging = { type: "stream_lagging", lastOffset: this.lastId ?? null };
      this.res.write(`data: ${JSON.stringify(lagging)}\n\n`);
      this.end();
      return;
    }
    // Frames produced in the same I/O turn (one Redis read can carry many announcements) leave
    // in one syscall: cork now, uncork once the turn is over.
    if (!this.corked) {
      this.corked = true;
      this.res.cork();
      setImmediate(() => {
        this.corked = false;
        this.res.uncork();
      });
    }
    this.res.write(chunk);
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.heartbeat);
    this.onEnd();
  }
}
