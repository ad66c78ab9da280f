/**
 * One client's view of one stream (a session's events or a project's activity): replay from its cursor, then live, with no gap and no
 * duplicate (queues-and-streams.md §4 "Subscribe, then replay, then merge"):
 * 1. watch the hub channel and buffer live announcements;
 * 2. replay from the cursor with XRANGE pages;
 * 3. flush buffered entries newer than the last one sent, then go live.
 * Live announcements carry their predecessor id; when it is not the last id sent, entries were
 * missed (pub/sub is at most once) and the gap is repaired from the stream. A cursor behind
 * retention or ahead of the stream yields an explicit `stream_reset` first, never a silent gap.
 */
import type { EventLog, StreamEntry, StreamRef } from "./event-log.ts";
import { compareOffsets, ORIGIN, offsetBefore } from "./offsets.ts";
import type { HubListener, StreamHub } from "./stream-hub.ts";

/** Why a subscriber's history restarts: entries were trimmed by retention, or the stream was lost. */
export type ResetReason = "trimmed" | "lost";

/** Where a subscription delivers. Calls are made in stream order and must not throw. */
export interface SubscriptionSink {
  entry(entry: StreamEntry): void;
  reset(reason: ResetReason, firstOffset: string): void;
  /** A Redis read failed; the subscription has stopped. */
  failed(err: unknown): void;
}

const PAGE = 500;

/** Replays and tails one stream for one client. */
export class StreamSubscription implements HubListener {
  private readonly log: EventLog;
  private readonly hub: StreamHub;
  private readonly ref: StreamRef;
  private readonly sink: SubscriptionSink;
  private readonly cursor: string | undefined;
  private lastSent: string = ORIGIN;
  /** The stream epoch this subscription has delivered from (undefined until known). */
  private epoch: string | undefined;
  private buffering = true;
  private buffer: StreamEntry[] = [];
  private repairing = false;
  private repairAgain = false;
  private closed = false;
  private unwatch: (() => Promise<void>) | undefined;

  /**
   * @param cursor resume after this offset ("0" = everything retained); undefined = live only
   */
  constructor(
    log: EventLog,
    hub: StreamHub,
    ref: StreamRef,
    cursor: string | undefined,
    sink: SubscriptionSink,
  ) {
    this.log = log;
    this.hub = hub;
    this.ref = ref;
    this.cursor = cursor;
    this.sink = sink;
  }

  /** The offset of the last entry delivered (or the starting point). */
  get offset(): string {
    return this.lastSent;
  }

  /** Subscribes, replays and switches to live. Rejects only if the first Redis calls fail. */
  async start(): Promise<void> {
    const channel = this.log.address(this.ref).channel;
    this.unwatch = await this.hub.watch(channel, this);
    if (this.cursor === undefined) {
      const { last, epoch } = await this.log.bounds(this.ref);
      this.lastSent = last ?? ORIGIN;
      this.epoch = epoch;
    } else {
      this.lastSent = await this.checkCursor(this.cursor);
    }
    await this.catchUp();
  }

  /** Stops delivery. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.buffer = [];
    await this.unwatch?.();
  }

  onEntry(epoch: string, prev: string, id: string, data: string): void {
    if (this.closed) return;
    if (this.epoch !== undefined && epoch !== this.epoch) {
      // The stream was lost and recreated under us: tell the client, then carry on from the new stream.
      this.epoch = epoch;
      this.buffer = [];
      this.sink.reset("lost", "0");
      this.lastSent = ORIGIN;
      void this.catchUp();
      return;
    }
    this.epoch ??= epoch;
    if (this.buffering) {
      this.buffer.push({ id, data });
      return;
    }
    if (compareOffsets(id, this.lastSent) <= 0) return;
    if (prev !== this.lastSent) {
      // A predecessor we never saw: fetch the gap from the stream (this entry included).
      void this.catchUp();
      return;
    }
    this.deliver({ id, data });
  }

  onResync(): void {
    if (this.closed) return;
    // After a reconnect the stream may be gone (Redis restarted without its data): re-validate.
    void this.resync();
  }

  private async resync(): Promise<void> {
    try {
      const known = this.epoch;
      const { epoch } = await this.log.bounds(this.ref);
      if (known !== undefined && epoch !== known) {
        this.epoch = epoch;
        this.buffer = [];
        this.sink.reset("lost", "0");
        this.lastSent = ORIGIN;
      } else if (this.lastSent !== ORIGIN) {
        this.lastSent = await this.checkCursor(this.lastSent);
      }
    } catch {
      // Redis still unreachable: catchUp below retries the read and fails the subscription if it must
    }
    await this.catchUp();
  }

  /**
   * Validates a client cursor against the stream and returns where to replay from. A cursor is
   * good when it names a retained entry, or is the synthetic offset just before one (what
   * `POST …/prompt` returns). Older than the first retained entry of a trimmed stream → reset
   * "trimmed". Anything else — ahead of the stream, or an id this stream never had (Redis lost
   * the data and the stream was recreated) → reset "lost". Both restart from the first retained entry.
   */
  private async checkCursor(cursor: string): Promise<string> {
    const b = await this.log.bounds(this.ref);
    this.epoch = b.epoch;
    if (cursor === "0" || cursor === ORIGIN) return ORIGIN;
    if (b.last === undefined || compareOffsets(cursor, b.last) > 0) {
      this.sink.reset("lost", b.first ?? "0");
      return ORIGIN;
    }
    if (b.first && compareOffsets(cursor, offsetBefore(b.first)) < 0) {
      this.sink.reset(b.trimmed ? "trimmed" : "lost", b.first);
      return ORIGIN;
    }
    if (!(await this.log.isPosition(this.ref, cursor))) {
      this.sink.reset("lost", b.first ?? "0");
      return ORIGIN;
    }
    return cursor;
  }

  private deliver(entry: StreamEntry): void {
    this.lastSent = entry.id;
    this.sink.entry(entry);
  }

  /** Reads the stream after `lastSent` until caught up, then flushes the live buffer. */
  private async catchUp(): Promise<void> {
    if (this.repairing) {
      this.repairAgain = true;
      return;
    }
    this.repairing = true;
    this.buffering = true;
    try {
      do {
        this.repairAgain = false;
        for (;;) {
          if (this.closed) return;
          const page = await this.log.range(this.ref, this.lastSent, PAGE);
          for (const e of page) if (compareOffsets(e.id, this.lastSent) > 0) this.deliver(e);
          if (page.length < PAGE) break;
        }
      } while (this.repairAgain);
      const pending = this.buffer;
      this.buffer = [];
      for (const e of pending) if (compareOffsets(e.id, this.lastSent) > 0) this.deliver(e);
      this.buffering = false;
    } catch (err) {
      if (!this.closed) this.sink.failed(err);
      await this.close();
    } finally {
      this.repairing = false;
    }
  }
}
