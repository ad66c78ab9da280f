/**
 * Runs of one session start strictly in sequence order, one at a time
 * (queues-and-streams.md §3.4 pitfalls 5–6): a fetched run waits until it is the oldest open run
 * of its session (the head of the session's open-runs zset in Redis). Waiters are woken when a run
 * of the session ends in this process, with a slow re-check as a safety net for runs that end
 * elsewhere (e.g. cancelled by a gateway).
 */
import type { EventLog, SessionRef } from "@pi-fleet/streams";

const RECHECK_MS = 1000;

/** Per-session start order for one owned project. */
export class SessionGate {
  private readonly log: EventLog;
  private readonly waiters = new Map<string, Set<() => void>>();

  constructor(log: EventLog) {
    this.log = log;
  }

  /**
   * Waits until `runId` is the oldest open run of its session: "turn"; "gone" if the run is no
   * longer open (ended or cancelled); "stopped" if `signal` aborted; "timeout" after `timeoutMs`
   * (the caller then gives its queue slot back, so waiting runs can never hold every slot while
   * the older run they wait for sits unfetched in the queue).
   */
  async waitTurn(
    ref: SessionRef,
    runId: string,
    signal: AbortSignal,
    timeoutMs: number,
  ): Promise<"turn" | "gone" | "stopped" | "timeout"> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (signal.aborted) return "stopped";
      const open = await this.log.openRuns(ref);
      if (open[0] === runId) return "turn";
      if (!open.includes(runId)) return "gone";
      if (performance.now() >= deadline) return "timeout";
      await this.sleep(ref.session, signal, Math.max(1, Math.min(RECHECK_MS, deadline - performance.now())));
    }
  }

  /** Wakes the waiters of a session (call after a run of it ended). */
  wake(session: string): void {
    const set = this.waiters.get(session);
    if (!set) return;
    this.waiters.delete(session);
    for (const fn of set) fn();
  }

  private sleep(session: string, signal: AbortSignal, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let set = this.waiters.get(session);
      if (!set) {
        set = new Set();
        this.waiters.set(session, set);
      }
      const done = () => {
        clearTimeout(timer);
        set.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}
