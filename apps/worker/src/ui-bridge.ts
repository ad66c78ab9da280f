/**
 * The extension UI of one session on its owner (pi-sdk.md §6, API.md "Event stream"): pi's
 * dialogs become `extension_ui_request` events on the session stream plus an entry in the
 * session's pending-UI hash (which any gateway lists, re-sends to new subscribers and answers
 * from); the answer comes back over the control channel. Fire-and-forget calls and extension
 * errors become events only. pi's own events outside a run (a command's `session_info_changed`,
 * `thinking_level_changed`, a manual compaction, a user `bash`, the `queue_update` of clearing an
 * unfinished run's queued input) take the same out-of-band path onto the session stream.
 *
 * Writes are always fenced by the project lease: during a run, events go through the run's
 * EventPublisher (same fenced, ordered path as pi's own events, so a dialog sits exactly where pi
 * raised it); outside a run (an extension's `session_start`, a command) they are appended with
 * the lease token directly, in call order. An ex-owner therefore never shows a dialog; its
 * `request` answers the default at once.
 *
 * First answer wins: the pending entry is taken out of Redis by one atomic script, by the answer,
 * the dialog's timeout or abort, or a cancel (run end, session dispose), whichever comes first.
 */
import type { WireEvent } from "@pi-fleet/contracts";
import type { ProjectLease } from "@pi-fleet/leases";
import type { Logger } from "@pi-fleet/observability";
import type { ExtensionUiHost, UiAnswer, UiRequest } from "@pi-fleet/pi-runtime";
import type { UiResolution } from "@pi-fleet/registry";
import { FencedError, type SessionRef } from "@pi-fleet/streams";
import type { EventPublisher } from "./event-publisher.ts";
import type { WorkerContext } from "./worker-context.ts";

/** How an answer delivered by the control channel fared. */
export type UiAnswerOutcome = "answered" | "already_answered" | "unknown";

/** The control reply error for {@link UiAnswerOutcome} "already_answered" (the gateway maps it to 409). */
export const UI_ALREADY_ANSWERED = "already answered";

/** True for a client answer pi understands: `{value: string}`, `{confirmed: boolean}` or `{cancelled: true}`. */
export function isUiAnswer(value: unknown): value is UiAnswer {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.value === "string" || typeof v.confirmed === "boolean" || v.cancelled === true;
}

/** A dialog waiting on this worker. */
interface Waiter {
  /** Settles the dialog (first call wins). */
  settle(answer: UiAnswer | undefined): void;
  settled: boolean;
  /** Settled by a client's answer (not a timeout, abort or cancel). */
  answered: boolean;
}

/** Extension UI host of one session, for the lifetime of its project lease. */
export class UiBridge implements ExtensionUiHost {
  readonly #ctx: WorkerContext;
  readonly #lease: ProjectLease;
  readonly #ref: SessionRef;
  readonly #log: Logger;
  readonly #waiting = new Map<string, Waiter>();
  /** Dialogs in progress (settled ones too, until their pending entry is resolved). */
  readonly #dialogs = new Set<Promise<unknown>>();
  #publisher: EventPublisher | undefined;
  /** Direct (no run) appends, chained so they keep call order. */
  #tail: Promise<void> = Promise.resolve();
  #disposed = false;

  constructor(ctx: WorkerContext, lease: ProjectLease, ref: SessionRef) {
    this.#ctx = ctx;
    this.#lease = lease;
    this.#ref = ref;
    this.#log = ctx.logger.child({ org: ref.org, project: ref.project, session: ref.session });
  }

  /** Routes events through a run's publisher while the run is active. */
  attach(publisher: EventPublisher): void {
    this.#publisher = publisher;
  }

  /** The run ended: later events are appended directly, after everything the run published. */
  detach(publisher: EventPublisher): void {
    if (this.#publisher !== publisher) return;
    this.#publisher = undefined;
    this.#tail = this.#tail.then(() => publisher.flush());
  }

  request(request: UiRequest, signal: AbortSignal): Promise<UiAnswer | undefined> {
    const dialog = this.#ask(request, signal);
    this.#dialogs.add(dialog);
    void dialog.finally(() => this.#dialogs.delete(dialog));
    return dialog;
  }

  notify(event: WireEvent): void {
    this.#publish(event);
  }

  /**
   * Delivers a client's answer (control channel `ui_response`). Exactly one answer per dialog
   * wins, across every gateway: "already_answered" when another answer, the dialog's timeout or
   * a cancel came first; "unknown" when no such dialog waits on this worker.
   */
  async answer(requestId: string, answer: UiAnswer): Promise<UiAnswerOutcome> {
    const waiter = this.#waiting.get(requestId);
    if (waiter?.settled) return "already_answered"; // timed out or cancelled; its entry goes next
    const { org, project, session } = this.#ref;
    const won = await this.#ctx.registry.resolvePendingUi(org, project, session, requestId, "answered");
    if (!won) {
      const status = await this.#ctx.registry.pendingUiStatus(org, project, session, requestId);
      return status === "answered" ? "already_answered" : "unknown";
    }
    if (!waiter) return "unknown"; // a stale entry (removed now): nothing here waits for it
    if (waiter.settled) return "already_answered"; // timed out while the entry was being taken
    waiter.answered = true;
    waiter.settle(answer);
    return "answered";
  }

  /**
   * Resolves every waiting dialog to pi's default (run ended or aborted) and waits until their
   * pending entries are gone.
   */
  async cancelAll(): Promise<void> {
    for (const waiter of this.#waiting.values()) waiter.settle(undefined);
    await Promise.all([...this.#dialogs]);
  }

  /** Cancels every dialog and stops publishing (the session is being disposed). */
  async dispose(): Promise<void> {
    this.#disposed = true;
    await this.cancelAll();
    await this.#tail;
  }

  async #ask(request: UiRequest, signal: AbortSignal): Promise<UiAnswer | undefined> {
    if (signal.aborted || this.#disposed) return undefined;
    let settle!: (answer: UiAnswer | undefined) => void;
    const settled = new Promise<UiAnswer | undefined>((resolve) => {
      settle = resolve;
    });
    const waiter: Waiter = {
      settled: false,
      answered: false,
      settle(answer) {
        if (this.settled) return;
        this.settled = true;
        settle(answer);
      },
    };
    this.#waiting.set(request.id, waiter);
    const onAbort = () => waiter.settle(undefined);
    signal.addEventListener("abort", onAbort, { once: true });
    const { org, project, session } = this.#ref;
    try {
      // Pending first, then the event: a subscriber arriving in between gets it re-sent (and may
      // see it twice; clients dedupe by id) rather than missing it.
      if (!(await this.#ctx.registry.addPendingUi(org, project, session, this.#lease.token, request))) {
        this.#log.warn({ requestId: request.id }, "extension dialog not shown: the project lease is gone");
        return undefined;
      }
      if (!waiter.settled) this.#publish(request);
      return await settled;
    } catch (err) {
      this.#log.warn({ err: (err as Error).message, requestId: request.id }, "extension dialog failed");
      return undefined;
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.#waiting.delete(request.id);
      if (!waiter.answered) {
        const by: UiResolution = signal.aborted && signal.reason === "timeout" ? "timeout" : "cancelled";
        await this.#ctx.registry
          .resolvePendingUi(org, project, session, request.id, by)
          .catch((err: Error) =>
            this.#log.warn({ err: err.message, requestId: request.id }, "could not withdraw a dialog"),
          );
      }
    }
  }

  #publish(event: WireEvent): void {
    if (this.#disposed) return;
    const publisher = this.#publisher;
    if (publisher) {
      publisher.push(event);
      return;
    }
    this.#tail = this.#tail.then(() => this.#appendDirect(event));
  }

  async #appendDirect(event: WireEvent): Promise<void> {
    try {
      await this.#ctx.events.append(this.#ref, this.#lease.token, [{ event }]);
    } catch (err) {
      const type = event.type;
      if (err instanceof FencedError)
        this.#log.warn({ type }, "out-of-run event dropped: the project lease is gone");
      else this.#log.warn({ type, err: (err as Error).message }, "out-of-run event could not be appended");
    }
  }
}
