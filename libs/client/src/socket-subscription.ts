/**
 * One subscription of a `PiFleetSocket` (socket.ts): its resume cursor, the state of its
 * subscribe on the current connection, and the bounded queue its consumer iterates.
 */
import { Cursor } from "./resume.ts";
import type { StreamItem } from "./types.ts";

/** Default of `SocketOptions.maxQueuedEvents`. */
export const DEFAULT_MAX_QUEUED_EVENTS = 1000;

/**
 * One subscription of a {@link PiFleetSocket}: iterate it to receive the stream's items in order,
 * without gap or duplicate across reconnects (the socket resubscribes from `offset`). A
 * `stream_reset` item (no offset) means the cursor could not be honoured: reload history; the
 * stream carries on. Iteration ends when the subscription or the socket is closed (or `signal`
 * aborts), and throws {@link PiFleetSocketError} when the gateway rejects the subscription
 * (unknown project or session, invalid cursor). One consumer per subscription.
 */
export interface PiFleetSubscription extends AsyncIterable<StreamItem> {
  readonly projectId: string;
  /** Absent for a project activity subscription. */
  readonly sessionId: string | undefined;
  /**
   * The offset of the last item received (queued for, or already handed to, the consumer): where a
   * resubscription resumes.
   */
  readonly offset: string | undefined;
  /** Unsubscribes; iteration ends after the current item. Idempotent. */
  close(): void;
}

/** What a subscription asks of its socket. */
export interface SubscriptionOwner {
  /** The consumer closed `sub` (or stopped iterating). */
  unsubscribe(sub: Subscription): void;
  /** `sub` was paused (its queue was full) and its consumer caught up: subscribe again. */
  resume(sub: Subscription): void;
}

/** The {@link PiFleetSubscription} implementation; the socket drives its connection state. */
export class Subscription implements PiFleetSubscription {
  readonly projectId: string;
  readonly sessionId: string | undefined;
  /** `projectId/sessionId` (`projectId/` for activity): how the gateway's frames name the stream. */
  readonly key: string;
  readonly cursor: Cursor;
  /** The id of the latest subscribe frame, to match its `subscribed` or `error` answer. */
  frameId: string | undefined;
  /**
   * The gateway acknowledged the latest subscribe (`subscribed` with its id) on the current
   * connection. Event frames name only the stream: those before the ack belong to an earlier
   * subscription of the same stream (closed or paused, its frames still in flight) and are dropped.
   */
  acked = false;
  /** A subscribe was sent on the current connection and not unsubscribed since. */
  live = false;
  /** Unsubscribed on the gateway because the queue was full; subscribes again once it drains. */
  paused = false;
  /** Consecutive retryable refusals of the subscribe (backoff). */
  failures = 0;
  private readonly owner: SubscriptionOwner;
  private readonly maxQueued: number;
  private queue: StreamItem[] = [];
  private wake: (() => void) | undefined;
  private ended = false;
  private error: Error | undefined;
  private iterator: AsyncGenerator<StreamItem, void, undefined> | undefined;

  /**
   * @param maxQueued items queued for the consumer at most (≥ 1; `Infinity`: no bound); at that
   * many {@link full} is true and the socket pauses the subscription until the consumer is down to
   * half of it.
   */
  constructor(
    owner: SubscriptionOwner,
    projectId: string,
    sessionId: string | undefined,
    after: string | undefined,
    maxQueued: number,
  ) {
    this.owner = owner;
    this.projectId = projectId;
    this.sessionId = sessionId;
    this.key = `${projectId}/${sessionId ?? ""}`;
    this.cursor = new Cursor(after);
    this.maxQueued = Number.isNaN(maxQueued) ? DEFAULT_MAX_QUEUED_EVENTS : Math.max(1, Math.floor(maxQueued));
  }

  get offset(): string | undefined {
    return this.cursor.offset;
  }

  /** True when the queue holds `maxQueued` items: accept nothing more until it drains. */
  get full(): boolean {
    return this.queue.length >= this.maxQueued;
  }

  [Symbol.asyncIterator](): AsyncIterator<StreamItem> {
    this.iterator ??= this.iterate();
    return this.iterator;
  }

  close(): void {
    if (this.ended) return;
    this.end();
    this.queue = [];
    this.owner.unsubscribe(this);
  }

  push(item: StreamItem): void {
    if (this.ended) return;
    this.queue.push(item);
    this.notify();
  }

  /** Ends iteration with `error` (after the items already queued). */
  fail(error: Error): void {
    this.error = error;
    this.end();
  }

  /** Ends iteration normally. */
  end(): void {
    this.ended = true;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private async *iterate(): AsyncGenerator<StreamItem, void, undefined> {
    try {
      for (;;) {
        const item = this.queue.shift();
        if (item) {
          if (this.paused && !this.ended && this.queue.length <= Math.floor(this.maxQueued / 2)) {
            this.owner.resume(this);
          }
          yield item;
          continue;
        }
        if (this.error) throw this.error;
        if (this.ended) return;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
    } finally {
      this.close();
    }
  }
}
