/**
 * One client's view of one stream (a session's events or a project's activity): replay from its
 * cursor, then live, with no gap and no duplicate (queues-and-streams.md §4 "Subscribe, then
 * replay, then merge"):
 * 1. `open()`: watch the hub channel (live announcements are buffered) and learn the stream's
 *    epoch and last id — cheap, so the caller can send its response head right after;
 * 2. `catchUp()`: replay after the cursor in pages, each read in one consistent view that also
 *    says whether the cursor still exists (trimming happens concurrently); respecting the sink's
 *    backpressure, so a client far behind is fed as fast as it reads, never buffered without bound;
 * 3. flush buffered live entries newer than the last one sent, then deliver live.
 * Live announcements carry the stream epoch and their predecessor id: a different epoch means the
 * stream was lost and recreated; a predecessor we did not send means missed announcements, and
 * the gap is read from the stream. A cursor behind retention, ahead of the stream, or unknown to
 * it yields an explicit `stream_reset` first, never a silent gap. A stream whose session or
 * project is deleted ends with its `stream_ended` event (`SubscriptionSink.ended`).
 */
import type { EventLog, StreamEntry, StreamRef } from "./event-log.ts";
import { compareOffsets, ORIGIN, offsetBefore } from "./offsets.ts";
import { type HubListener, type StreamHub, streamEndedJson } from "./stream-hub.ts";

/** Why a subscriber's history restarts: entries were trimmed by retention, or the stream was lost. */
export type ResetReason = "trimmed" | "lost";

/** Where a subscription delivers. Calls are made in stream order and must not throw. */
export interface SubscriptionSink {
  entry(entry: StreamEntry): void;
  reset(reason: ResetReason, firstOffset: string): void;
  /** A Redis read failed; the subscription has stopped. */
  failed(err: unknown): void;
  /**
   * The stream ended for good (its session or project was deleted; the announcement is best
   * effort, pub/sub being at most once): `data` is the final `stream_ended` event's JSON, to send
   * without an offset. The subscription has stopped; the caller ends the client's stream.
   */
  ended(data: string): void;
  /**
   * Backpressure while replaying: a promise while the client's connection is congested (resolve
   * it when it drained or closed), undefined when more may be written now.
   */
  congested?(): Promise<void> | undefined;
}

/** Entries per replay read: small enough that a paused replay holds little (events can be ~50 KB). */
const PAGE = 50;
/**
 * Live entries (and their bytes) buffered during a replay before the buffer is dropped: they are
 * re-read from the stream instead, so a slow replay never holds a busy stream's backlog.
 */
const MAX_BUFFERED = 10_000;
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/** A live entry held during a replay, with the id of the entry before it in the stream. */
type BufferedEntry = StreamEntry & { prev: string };

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
  private buffer: BufferedEntry[] = [];
  private bufferedBytes = 0;
  /** Bumped by restart(): a page read before it belongs to the lost stream and is dropped. */
  private generation = 0;
  private repairing = false;
  private repairAgain = false;
  private closed = false;
  private unwatch: (() => Promise<void>) | undefined;
  /** The `createdAt` of the stream's session or project record when open() looked (EventLog.recordCreatedAt). */
  private recordCreatedAt: string | undefined;
  /** Set once `open()` fixed the starting point; resyncs before that are left to `catchUp()`. */
  private opened = false;

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

  /** `open()` then `catchUp()`. Rejects only if the first Redis calls fail. */
  async start(): Promise<void> {
    await this.open();
    await this.catchUp();
  }

  /**
   * Watches the live channel and fixes the starting point; entries published from now on are
   * buffered until `catchUp()` runs. When the stream's session (or project) no longer exists, the
   * subscription ends at once (`sink.ended`). Rejects if Redis fails.
   */
  async open(): Promise<void> {
    const unwatch = await this.hub.watch(this.log.address(this.ref).channel, this);
    if (this.closed) {
      // Closed while the watch was being set up (the client left): close() found nothing to undo.
      await unwatch();
      return;
    }
    this.unwatch = unwatch;
    const [{ first, last, epoch }, createdAt] = await Promise.all([
      this.log.bounds(this.ref),
      this.log.recordCreatedAt(this.ref),
    ]);
    if (this.closed) return; // ended (deleted) or closed meanwhile: nothing more to send
    this.recordCreatedAt = createdAt;
    if (createdAt === undefined) {
      // Deleted after the caller looked it up but before the watch above: its end announcement
      // went to nobody, so end here (a deletion from now on is announced to this watch).
      this.onEnd(streamEndedJson("session" in this.ref ? "session_deleted" : "project_deleted"));
      return;
    }
    this.epoch = epoch;
    if (this.cursor === undefined) {
      this.lastSent = last ?? ORIGIN;
    } else if (this.cursor === "0" || this.cursor === ORIGIN) {
      this.lastSent = ORIGIN;
    } else if (last === undefined || compareOffsets(this.cursor, last) > 0) {
      // Ahead of everything this stream ever held: the client saw a stream Redis no longer has.
      this.sink.reset("lost", first ?? "0");
      this.lastSent = first === undefined ? ORIGIN : offsetBefore(first);
    } else {
      this.lastSent = this.cursor;
    }
    this.opened = true;
  }

  /** Stops delivery. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.dropBuffer();
    await this.unwatch?.();
  }

  onEntry(epoch: string, prev: string, id: string, data: string): void {
    if (this.closed) return;
    if (this.epoch !== undefined && epoch !== this.epoch) {
      // The stream was lost and recreated under us: tell the client, then carry on from the new stream.
      this.restart(epoch);
      void this.catchUp();
      return;
    }
    this.epoch ??= epoch;
    if (this.buffering) {
      if (this.buffer.length < MAX_BUFFERED && this.bufferedBytes + data.length <= MAX_BUFFERED_BYTES) {
        this.buffer.push({ id, data, prev });
        this.bufferedBytes += data.length;
      } else {
        // Too much at once: drop it all, the replay re-reads it from the stream.
        this.dropBuffer();
        this.repairAgain = true;
      }
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

  onEnd(data: string): void {
    if (this.closed) return;
    void this.close();
    this.sink.ended(data);
  }

  onResync(): void {
    // Before open() finished, the catch-up that follows it reads everything anyway.
    if (!this.closed && this.opened) void this.resync();
  }

  /**
   * After the hub reconnected, announcements may have been lost: the stream may have been
   * recreated (Redis restarted without data), or its session or project deleted (its one
   * `stream_ended` announcement went to nobody), perhaps created again under the same id (its
   * record's `createdAt` differs): then the subscription ends as open() ends it.
   */
  private async resync(): Promise<void> {
    try {
      // One probe per stream for all its subscribers (StreamHub.shared).
      const [{ epoch }, createdAt] = await this.hub.shared(this.log.address(this.ref).channel, () =>
        Promise.all([this.log.bounds(this.ref), this.log.recordCreatedAt(this.ref)]),
      );
      if (this.closed) return;
      if (createdAt === undefined || createdAt !== this.recordCreatedAt) {
        this.onEnd(streamEndedJson("session" in this.ref ? "session_deleted" : "project_deleted"));
        return;
      }
      if (this.epoch !== undefined && epoch !== this.epoch) this.restart(epoch);
    } catch {
      // still unreachable: catchUp retries the read and fails the subscription if it must
    }
    await this.catchUp();
  }

  private restart(epoch: string | undefined): void {
    this.epoch = epoch;
    this.generation++;
    this.dropBuffer();
    this.sink.reset("lost", "0");
    this.lastSent = ORIGIN;
  }

  private dropBuffer(): void {
    this.buffer = [];
    this.bufferedBytes = 0;
  }

  private deliver(entry: StreamEntry): void {
    this.lastSent = entry.id;
    this.sink.entry(entry);
  }

  /**
   * Reads the stream after `lastSent` until caught up, then flushes the live buffer. Each page is
   * one consistent read: if `lastSent` no longer exists, it must be the synthetic offset just
   * before the first retained entry, else entries after it were trimmed (reset "trimmed") or the
   * stream never had it (reset "lost").
   */
  async catchUp(): Promise<void> {
    if (this.repairing) {
      this.repairAgain = true;
      return;
    }
    this.repairing = true;
    this.buffering = true;
    try {
      for (;;) {
        await this.replay();
        if (this.closed) return;
        if (await this.flushBuffer()) break;
      }
      this.buffering = false;
    } catch (err) {
      if (!this.closed) this.sink.failed(err);
      await this.close();
    } finally {
      this.repairing = false;
    }
  }

  /**
   * Delivers the live entries that arrived during the replay, each only if it follows the last
   * one sent (an entry whose announcement was lost is not skipped: read the stream again
   * instead), at the pace the client reads like the replay: entries that arrive while it waits
   * join the buffer and are flushed in turn.
   * @returns true when caught up; false when the stream must be read again (a gap, a buffer
   *   that overflowed while waiting, or the stream recreated meanwhile)
   */
  private async flushBuffer(): Promise<boolean> {
    const generation = this.generation;
    while (this.buffer.length > 0) {
      // Entries are let go as they are delivered: while the client is slow, what is left of this
      // batch and the new buffer together stay within the buffer's caps (plus one batch).
      const pending: (BufferedEntry | undefined)[] = this.buffer;
      this.dropBuffer();
      for (let i = 0; i < pending.length; i++) {
        const e = pending[i];
        pending[i] = undefined;
        if (!e) continue;
        if (this.closed) return true;
        if (compareOffsets(e.id, this.lastSent) <= 0) continue;
        if (e.prev !== this.lastSent) return false;
        this.deliver(e);
        const wait = this.sink.congested?.();
        if (wait) {
          await wait;
          if (this.repairAgain || generation !== this.generation) return false;
        }
      }
    }
    return true;
  }

  /** Reads pages after `lastSent` until caught up (and again while live entries overflowed). */
  private async replay(): Promise<void> {
    do {
      this.repairAgain = false;
      for (;;) {
        if (this.closed) return;
        const generation = this.generation;
        const page = await this.log.readPage(this.ref, this.lastSent, PAGE);
        // The stream was lost meanwhile (restart() reset the cursor): this page is stale.
        if (generation !== this.generation) continue;
        if (this.lastSent !== ORIGIN && !page.afterExists) {
          const first = page.first;
          const next = page.entries[0]?.id;
          // A cursor that is no entry is fine when it is the synthetic offset just before the
          // entry that follows it (what `POST …/prompt` returns); entries after it are complete.
          if (next === undefined || offsetBefore(next) !== this.lastSent) {
            // Older than the first retained entry of a trimmed stream: what followed it was
            // trimmed. Otherwise (an empty or recreated stream, or an id inside the retained
            // range it never had): the stream was lost. Either way, restart just before the
            // first retained entry, so a trim racing this read yields another explicit reset.
            const trimmed = page.trimmed && first !== undefined && compareOffsets(this.lastSent, first) < 0;
            this.sink.reset(trimmed ? "trimmed" : "lost", first ?? "0");
            this.lastSent = first === undefined ? ORIGIN : offsetBefore(first);
            continue;
          }
        }
        let stale = false;
        for (const e of page.entries) {
          if (this.closed) return;
          if (compareOffsets(e.id, this.lastSent) <= 0) continue;
          this.deliver(e);
          const wait = this.sink.congested?.();
          if (wait) await wait;
          // Lost while the client drained: the rest of this page belongs to the old stream.
          if (generation !== this.generation) {
            stale = true;
            break;
          }
        }
        if (!stale && page.entries.length < PAGE) break;
      }
    } while (this.repairAgain);
  }
}
