/**
 * One subscription of a `PiFleetSocket` (socket.ts): its resume cursor, the state of its
 * subscribe on the current connection, and the bounded queue its consumer iterates.
 */
import { PiFleetError } from "./errors.ts";
import { Cursor } from "./resume.ts";
import type { StreamItem } from "./types.ts";

/** Default of `SocketOptions.maxQueuedEvents`. */
export const DEFAULT_MAX_QUEUED_EVENTS = 1000;
/**
 * Least `SocketOptions.maxQueuedEvents`: each pause costs an unsubscribe and a subscribe (the
 * org's request budget, a dozen Redis commands on the gateway); the consumer reads at least half
 * of this between two.
 */
export const MIN_MAX_QUEUED_EVENTS = 16;
/** Extension-UI dialog ids a subscription remembers (the latest), to drop re-sent dialogs. */
const MAX_DIALOG_IDS = 1000;

/**
 * `SocketOptions.maxQueuedEvents` checked: undefined gives {@link DEFAULT_MAX_QUEUED_EVENTS}.
 * @throws PiFleetError unless an integer ≥ {@link MIN_MAX_QUEUED_EVENTS} or `Infinity` (no bound)
 */
export function checkMaxQueued(value: number | undefined): number {
  if (value === undefined) return DEFAULT_MAX_QUEUED_EVENTS;
  if (value === Number.POSITIVE_INFINITY || (Number.isInteger(value) && value >= MIN_MAX_QUEUED_EVENTS)) {
    return value;
  }
  throw new PiFleetError(
    `maxQueuedEvents must be an integer of at least ${MIN_MAX_QUEUED_EVENTS}, or Infinity (got ${String(value)})`,
  );
}

/** The id of a pi extension-UI dialog (`extension_ui_request`, `id` a string), else undefined. */
function dialogId(item: StreamItem): string | undefined {
  const { event } = item;
  return event.type === "extension_ui_request" && typeof event.id === "string" ? event.id : undefined;
}

/**
 * One subscription of a {@link PiFleetSocket}: iterate it to receive the stream's items in order,
 * without gap or duplicate across reconnects (the socket resubscribes from `offset`). A
 * `stream_reset` item (no offset) means the cursor could not be honoured: reload history; the
 * stream carries on. An extension-UI dialog (`extension_ui_request`) is yielded once per `id`,
 * although the gateway re-sends the pending ones (without an offset) after every subscribe; after
 * a `stream_reset` the pending ones are yielded again. Iteration ends when the subscription or
 * the socket is closed (or `signal` aborts), and throws {@link PiFleetSocketError} when the
 * gateway rejects the subscription (unknown project or session, invalid cursor). One consumer per
 * subscription.
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
  /** Items in `queue` with an offset: only those count toward {@link full}. */
  private counted = 0;
  /** Ids of the dialogs queued or yielded (the latest {@link MAX_DIALOG_IDS}), oldest first. */
  private readonly dialogs = new Set<string>();
  private wake: (() => void) | undefined;
  private ended = false;
  private error: Error | undefined;
  private iterator: AsyncGenerator<StreamItem, void, undefined> | undefined;

  /**
   * @param maxQueued items with an offset queued for the consumer at most (checked by
   * {@link checkMaxQueued}; `Infinity`: no bound); at that many {@link full} is true and the socket
   * pauses the subscription until the consumer is down to half of it. Items without an offset
   * (re-sent dialogs, `stream_reset`) are queued beyond it and never pause: the gateway re-sends
   * pending dialogs after every subscribe, so they would pause the subscription again after each
   * resume.
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
    this.maxQueued = maxQueued;
  }

  get offset(): string | undefined {
    return this.cursor.offset;
  }

  /** True when the queue holds `maxQueued` items with an offset: take no more until it drains. */
  get full(): boolean {
    return this.counted >= this.maxQueued;
  }

  [Symbol.asyncIterator](): AsyncIterator<StreamItem> {
    this.iterator ??= this.iterate();
    return this.iterator;
  }

  close(): void {
    if (this.ended) return;
    this.end();
    this.queue = [];
    this.counted = 0;
    this.owner.unsubscribe(this);
  }

  /**
   * Queues `item` for the consumer, unless it is a dialog whose `id` was queued already (a pending
   * dialog the gateway re-sent). A `stream_reset` forgets the dialogs: the consumer reloads.
   */
  push(item: StreamItem): void {
    if (this.ended) return;
    const dialog = dialogId(item);
    if (dialog !== undefined) {
      if (this.dialogs.has(dialog)) return;
      this.dialogs.add(dialog);
      if (this.dialogs.size > MAX_DIALOG_IDS) this.dialogs.delete(this.dialogs.values().next().value!);
    } else if (item.event.type === "stream_reset") {
      this.dialogs.clear();
    }
    this.queue.push(item);
    if (item.offset !== undefined) this.counted++;
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
          if (item.offset !== undefined) this.counted--;
          if (this.paused && !this.ended && this.counted <= Math.floor(this.maxQueued / 2)) {
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
