/**
 * Moves a run's events from pi's synchronous listener into the session stream. `push` never
 * blocks or throws (pi-sdk.md §2.2, H11); events are appended in order by one fenced script call
 * per batch, one call in flight at a time. When a write is fenced (the lease moved), the publisher
 * stops for good and reports it once, so the run can be aborted — an ex-owner writes nothing more.
 * Likewise when the session's record is gone (it was deleted): `onGone` once, nothing more written.
 */
import type { WireEvent } from "@pi-fleet/contracts";
import type { Logger } from "@pi-fleet/observability";
import { type EventLog, FencedError, MissingRecordError, type SessionRef } from "@pi-fleet/streams";

interface Pending {
  /** The event as JSON, serialized when pushed: pi keeps mutating some objects it emitted. */
  event: string;
  history?: unknown;
}

/** Batching, ordered, fenced publisher for one run. */
export class EventPublisher {
  private readonly log: EventLog;
  private readonly ref: SessionRef;
  private readonly token: string;
  private readonly logger: Logger;
  private readonly onFenced: () => void;
  private readonly onGone: () => void;
  private queue: Pending[] = [];
  private inFlight: Promise<void> | undefined;
  private stopped = false;
  /** True once a write was rejected because the lease moved. */
  fenced = false;
  /** True once a write found the session deleted. */
  gone = false;
  /** Entries appended so far. */
  appended = 0;

  /**
   * @param onFenced called once when a write is fenced (the lease moved)
   * @param onGone called once when a write finds the session's record gone (it was deleted)
   */
  constructor(
    log: EventLog,
    ref: SessionRef,
    token: string,
    logger: Logger,
    onFenced: () => void,
    onGone: () => void,
  ) {
    this.log = log;
    this.ref = ref;
    this.token = token;
    this.logger = logger;
    this.onFenced = onFenced;
    this.onGone = onGone;
  }

  /**
   * Queues an event (and the message to mirror into history, if any). Never throws. The event is
   * serialized now, inside pi's listener: an assistant `message_start` carries pi's live partial
   * message, which would already hold later text by the time the batch is written.
   */
  push(event: WireEvent, history?: unknown): void {
    if (this.stopped) return;
    let json: string;
    try {
      json = JSON.stringify(event);
    } catch {
      return; // not serializable (a cycle): drop this one event rather than throw into pi
    }
    this.queue.push({ event: json, history });
    if (!this.inFlight) this.inFlight = this.drain();
  }

  /** Resolves when everything pushed so far was written (or dropped after fencing). */
  async flush(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  private async drain(): Promise<void> {
    // Let the synchronous burst of events from one pi chunk accumulate into one batch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      while (this.queue.length > 0 && !this.stopped) {
        const batch = this.queue.splice(0, 256);
        try {
          await this.log.append(this.ref, this.token, batch);
          this.appended += batch.length;
        } catch (err) {
          if (err instanceof FencedError) {
            this.stopped = true;
            this.fenced = true;
            this.queue = [];
            this.logger.warn("event append fenced: lease lost"); // the logger carries the run's ids
            this.onFenced();
            return;
          }
          if (err instanceof MissingRecordError) {
            // The session was deleted: its stream must stay gone, and its run must stop (the owner
            // may not have heard of the deletion: it opened the session just after it).
            this.stopped = true;
            this.gone = true;
            this.queue = [];
            this.logger.info("session deleted: its run's remaining events are dropped");
            this.onGone();
            return;
          }
          // Redis blip: retry the same batch in order after a short pause.
          this.logger.warn({ err: (err as Error).message }, "event append failed, retrying");
          this.queue.unshift(...batch);
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
    } finally {
      this.inFlight = undefined;
    }
  }
}
