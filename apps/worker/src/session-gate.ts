/**
 * Runs of one session start strictly in sequence order, one at a time
 * (queues-and-streams.md §3.4 pitfalls 5–6): a fetched run waits until it is the oldest open run
 * of its session (the head of the session's open-runs zset in Redis). Waiters are woken when a run
 * of the session ends in this process, with a slow re-check as a safety net for runs that end
 * elsewhere (e.g. cancelled by a gateway).
 *
 * A run that waited too long gives its queue slot back and is deferred (a delayed BullMQ job): the
 * gate also remembers how to promote it, so the run that ends before its delay does wakes the next
 * deferred run of its session at once instead of leaving it to its timer, and a run that ended
 * while the job was being deferred is caught by one look at the session's head right after.
 */
import type { EventLog, SessionRef } from "@pi-fleet/streams";

const RECHECK_MS = 1000;

/** Per-session start order for one owned project. */
export class SessionGate {
  private readonly log: EventLog;
  private readonly waiters = new Map<string, Set<() => void>>();
  /** Deferred runs by session, then by job id: their session seq and how to promote them. */
  private readonly deferred = new Map<string, Map<string, { seq: number; promote: () => Promise<void> }>>();

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

  /**
   * Wakes the waiters of a session (call after a run of it ended), and promotes its deferred run
   * with the lowest seq (the next in line; later ones stay deferred, they would only wait again).
   * A failed promotion (the job left the delayed state meanwhile) is ignored: the job is on its
   * way to a consumer anyway.
   */
  wake(session: string): void {
    const set = this.waiters.get(session);
    if (set) {
      this.waiters.delete(session);
      for (const fn of set) fn();
    }
    const deferred = this.deferred.get(session);
    if (!deferred) return;
    let next: [string, { seq: number; promote: () => Promise<void> }] | undefined;
    for (const entry of deferred) if (!next || entry[1].seq < next[1].seq) next = entry;
    if (!next) return;
    this.settled(session, next[0]);
    void next[1].promote().catch(() => undefined);
  }

  /**
   * Remembers a run that was just deferred (its job moved to the delayed set): `promote` moves it
   * back to the queue early when a run of its session ends here (see {@link wake}).
   * @param jobId the BullMQ job id (a run id, or a retry's `<runId>-e<epoch>`)
   * @param seq the run's sequence number in its session (RunJobData.seq, from enqueue-run.lua)
   */
  defer(session: string, jobId: string, seq: number, promote: () => Promise<void>): void {
    let jobs = this.deferred.get(session);
    if (!jobs) {
      jobs = new Map();
      this.deferred.set(session, jobs);
    }
    jobs.set(jobId, { seq, promote });
  }

  /**
   * Call right after deferring `runId`: if it is already the oldest open run of its session (the
   * run it waited for ended between the turn wait's timeout and the move to the delayed set, so
   * that end promoted nothing), wakes the session at once instead of leaving it to its timer.
   * One read of the session's open runs; a failed read leaves the run to its timer.
   */
  async recheckDeferred(ref: SessionRef, runId: string): Promise<void> {
    const open = await this.log.openRuns(ref).catch(() => undefined);
    if (open?.[0] === runId) this.wake(ref.session);
  }

  /** Forgets a deferred job (it was fetched again, or promoted). */
  settled(session: string, jobId: string): void {
    const jobs = this.deferred.get(session);
    if (!jobs?.delete(jobId) || jobs.size > 0) return;
    this.deferred.delete(session);
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
