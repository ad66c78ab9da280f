/**
 * Executes one run job on the project's owner: waits for the session's turn, marks the run
 * `running` (fenced), runs pi, streams every event through the fenced publisher, and records
 * exactly one terminal state. An owner that lost its lease writes nothing more: the next owner
 * reports the run as `run_interrupted` (ARCHITECTURE.md principle 4).
 */
import type { RunStatus, RunUsage, WireEvent } from "@pi-fleet/contracts";
import type { ProjectLease } from "@pi-fleet/leases";
import { withLogContext } from "@pi-fleet/observability";
import type { PiSession, RunOutcome } from "@pi-fleet/pi-runtime";
import type { RunJobData } from "@pi-fleet/queue";
import { type EventLog, FencedError, MissingRecordError, type SessionRef } from "@pi-fleet/streams";
import { EventPublisher } from "./event-publisher.ts";
import type { SessionGate } from "./session-gate.ts";
import { ProjectReleasingError, SessionGoneError, type SessionHost } from "./session-host.ts";
import type { WorkerContext } from "./worker-context.ts";

/**
 * What became of a fetched run job: "done" (ran, or no longer ours to run); "requeue" (never
 * started here — stopping or the lease is gone — back to the queue for the next owner);
 * "defer" (an older run of its session is still open: give the queue slot back and retry soon);
 * "throttle" (the org runs PI_FLEET_ORG_MAX_RUNS runs already: retry a little later).
 */
export type ExecuteOutcome = "done" | "requeue" | "defer" | "throttle";

/** How long a fetched run waits for its session's turn before giving its slot back (ms). */
const TURN_WAIT_MS = 500;
/** Attempts, and the first backoff (ms, doubling), to record a run's end through a Redis blip. */
const FINISH_ATTEMPTS = 4;
const FINISH_BACKOFF_MS = 250;

/** A run in progress on this worker. */
export interface ActiveRun {
  runId: string;
  session: PiSession;
  /** Set when the run is stopped for a reason other than a user abort. */
  interruptReason?: string;
}

const ZERO_USAGE: RunUsage = { input: 0, output: 0, cacheRead: 0, cacheWrite: 0, totalTokens: 0, cost: 0 };

/** The message to mirror into the session history for an event, if any (not `system`: it embeds server paths). */
function historyOf(event: WireEvent): unknown {
  if (event.type !== "message_end") return undefined;
  const message = event.message as { role?: string } | undefined;
  if (!message || message.role === "system") return undefined;
  return message;
}

/** Runs jobs for one owned project. */
export class RunExecutor {
  private readonly ctx: WorkerContext;
  private readonly lease: ProjectLease;
  private readonly host: SessionHost;
  private readonly gate: SessionGate;
  /** Runs in progress, by session id. */
  readonly active = new Map<string, ActiveRun>();
  /** Jobs being processed (waiting for their turn or running). */
  inFlight = 0;
  /** Monotonic time (ms) of the last job start or end, for idle release. */
  lastActivity = performance.now();
  /** Monotonic start time (ms) of each run in progress, by run id (metrics). */
  private readonly startedAt = new Map<string, number>();
  /** Per session, its run that started here: settles once the run's end was recorded (or not). */
  private readonly runEnds = new Map<string, Promise<void>>();
  /** Runs started here whose end is not recorded in Redis (yet, or because the write failed). */
  private readonly unrecorded = new Set<string>();
  /** Runs whose start-run call is in flight (it may already have marked them running). */
  private readonly starting = new Set<string>();

  /** True when every run started here has its end recorded (clean release, see ProjectRunner.leftClean). */
  get allRecorded(): boolean {
    return this.unrecorded.size === 0;
  }

  /**
   * True while `runId` is being started or runs here. A run recorded `running` under this lease
   * that is not live here was stranded by a Redis error (its start's answer or its end's write was
   * lost): see Takeover.failLostHead.
   */
  isLive(runId: string): boolean {
    return this.starting.has(runId) || this.startedAt.has(runId);
  }

  constructor(ctx: WorkerContext, lease: ProjectLease, host: SessionHost, gate: SessionGate) {
    this.ctx = ctx;
    this.lease = lease;
    this.host = host;
    this.gate = gate;
  }

  /** Executes the run of `data`; see {@link ExecuteOutcome}. */
  async execute(data: RunJobData, stop: AbortSignal): Promise<ExecuteOutcome> {
    this.inFlight++;
    this.lastActivity = performance.now();
    try {
      const ref: SessionRef = { org: data.org, project: data.project, session: data.sessionId };
      for (;;) {
        // Worker-wide capacity (PI_FLEET_MAX_RUNS), then one fenced call that starts the run only
        // if it is the oldest open run of its session and its org is below PI_FLEET_ORG_MAX_RUNS
        // (the fleet-wide cap: at it, the run waits in the queue while other orgs run).
        if (!(await this.ctx.slots.acquire(stop))) return "requeue";
        let started: Awaited<ReturnType<typeof this.ctx.events.startRun>> | { failed: Error };
        try {
          if (!this.lease.held) return "requeue";
          this.starting.add(data.runId);
          started = await this.ctx.events
            .startRun(
              ref,
              data.runId,
              this.lease.token,
              {
                type: "run_started",
                runId: data.runId,
                sessionId: data.sessionId,
                workerId: this.ctx.workerId,
                epoch: this.lease.epoch,
              },
              { workerId: this.ctx.workerId, epoch: this.lease.epoch },
              this.ctx.quota.terms,
            )
            .catch((err: unknown): { failed: Error } | { rejected: RunStatus } => {
              if (err instanceof FencedError) throw err;
              // The run's record is gone (its session was deleted): nothing to run.
              if (err instanceof MissingRecordError) return { rejected: "cancelled" };
              return { failed: err instanceof Error ? err : new Error(String(err)) };
            })
            .finally(() => this.starting.delete(data.runId));
          if ("failed" in started) {
            // Redis failed before the run started (a blip past the command connection's
            // retries): try again shortly, never fail the job (a failed job's run would stay
            // queued for ever and hold its session). Had the start been recorded after all, the
            // run is stranded `running`: unrecorded makes the next owner reconcile it, and a
            // later run's deferral ends it sooner (Takeover.failLostHead).
            this.unrecorded.add(data.runId);
            this.ctx.logger.warn({ err: started.failed.message, runId: data.runId }, "could not start run");
            return "defer";
          }
          if ("throttled" in started) return "throttle";
          if ("orgDisabled" in started) {
            // An operator disabled the org: its queued runs do not start (nor spend its credits).
            await this.ctx.events
              .transitionRun(
                ref,
                data.runId,
                this.lease.token,
                ["queued"],
                "cancelled",
                {
                  type: "run_cancelled",
                  runId: data.runId,
                  sessionId: data.sessionId,
                  reason: "org_disabled",
                },
                { reason: "org_disabled" },
              )
              .catch((err: unknown) => {
                if (err instanceof FencedError) throw err;
                this.ctx.logger.warn(
                  { err: (err as Error).message },
                  "could not cancel a disabled org's run",
                );
              });
            this.gate.wake(data.sessionId);
            return "done";
          }
          if ("offset" in started) {
            this.ctx.quota.adopt(data.org, data.runId);
            this.unrecorded.add(data.runId);
            this.startedAt.set(data.runId, performance.now());
            this.ctx.metrics.runStarted(data.enqueuedAtMs);
            // Runs of a session start one at a time: one entry per session.
            let settle = (): void => undefined;
            const ended = new Promise<void>((resolve) => {
              settle = resolve;
            });
            this.runEnds.set(data.sessionId, ended);
            try {
              // Every line logged while the run executes carries its ids, whichever logger writes it.
              const ids = {
                org: data.org,
                project: data.project,
                session: data.sessionId,
                runId: data.runId,
              };
              return await withLogContext(ids, () => this.runStarted(ref, data));
            } finally {
              settle();
              if (this.runEnds.get(data.sessionId) === ended) this.runEnds.delete(data.sessionId);
              this.startedAt.delete(data.runId);
              await this.ctx.quota.release(data.runId);
            }
          }
        } finally {
          this.ctx.slots.release();
        }
        if ("rejected" in started) return "done";
        // An older run of the session is still open: wait for its end (bounded), then try again.
        const turn = await this.gate.waitTurn(ref, data.runId, stop, TURN_WAIT_MS).catch((err: Error) => {
          this.ctx.logger.warn({ err: err.message, runId: data.runId }, "could not check the session's turn");
          return "timeout" as const;
        });
        if (turn === "gone") return "done";
        if (turn === "stopped") return "requeue";
        if (turn === "timeout") return "defer";
      }
    } finally {
      this.inFlight--;
      this.lastActivity = performance.now();
    }
  }

  /** Runs pi for a run that was just marked running (a worker slot is held by the caller). */
  private async runStarted(ref: SessionRef, data: RunJobData): Promise<ExecuteOutcome> {
    const log = this.ctx.logger.child({
      org: data.org,
      project: data.project,
      session: data.sessionId,
      runId: data.runId,
    });
    const token = this.lease.token;

    let session: PiSession;
    try {
      session = await this.host.acquire(data.sessionId);
    } catch (err) {
      if (err instanceof ProjectReleasingError) {
        // Started as the owner let the project go (its sessions are being disposed): it did not run.
        await this.finish(
          ref,
          data,
          "interrupted",
          { type: "run_interrupted", reason: "released" },
          { reason: "released", usage: ZERO_USAGE },
        );
        return "done";
      }
      if (err instanceof SessionGoneError) {
        // Deleted after the run started, before pi ran anything: aborted, as the deletion aborts a
        // running run (the deletion waits for this end: the project's activity stream has it).
        log.info("session deleted before its run opened it");
        await this.finish(
          ref,
          data,
          "aborted",
          { type: "run_aborted", usage: ZERO_USAGE },
          { usage: ZERO_USAGE },
        );
        return "done";
      }
      const error = err instanceof Error ? err.message : String(err);
      log.warn({ error }, "could not open session");
      await this.finish(ref, data, "failed", { type: "run_failed", error }, { error, usage: ZERO_USAGE });
      return "done";
    }
    const active: ActiveRun = { runId: data.runId, session };
    this.active.set(data.sessionId, active);
    const publisher = new EventPublisher(
      this.ctx.events,
      ref,
      token,
      log,
      () => {
        active.interruptReason = "lease_lost";
        void session.abort();
      },
      () => {
        // The session was deleted while this run opened it (the deletion's forget found nothing
        // to stop): stop it; once it ended, the session is forgotten and its transcript removed.
        this.host.markDeleted(data.sessionId);
        void session.abort();
      },
    );
    // Extension UI events of the run travel with pi's events, in order and fenced.
    const ui = this.host.uiBridge(data.sessionId);
    ui?.attach(publisher);
    let outcome: RunOutcome;
    try {
      const opts = data.images?.length ? { images: data.images } : {};
      let first = true;
      outcome = await session.run(data.text, opts, (event) => {
        if (first) {
          first = false;
          const t0 = this.startedAt.get(data.runId);
          if (t0 !== undefined) this.ctx.metrics.firstEvent.observe((performance.now() - t0) / 1000);
        }
        publisher.push(event, historyOf(event));
      });
    } finally {
      this.active.delete(data.sessionId);
      ui?.detach(publisher);
      // A dialog the run left behind (one no handler awaited) is withdrawn with the run.
      await ui?.cancelAll();
    }
    if (outcome.status !== "finished") {
      // Steering / follow-up messages still queued belonged to this run: never let them leak into the next one.
      await session.command({ type: "clear_queue" }).catch(() => undefined);
    }
    await publisher.flush();
    const aborted = () =>
      this.finish(
        ref,
        data,
        "aborted",
        { type: "run_aborted", usage: outcome.usage },
        { usage: outcome.usage },
      );
    if (publisher.gone) {
      // Aborted by the deletion (as when its forget_session reached this owner in time), with what
      // it used; then the session is let go of and its transcript removed.
      await aborted();
      await this.host.forgetDeleted(data.sessionId).catch((err: unknown) => {
        log.warn({ err: (err as Error).message }, "could not forget the deleted session");
      });
      return "done";
    }
    if (publisher.fenced || !this.lease.held) {
      log.warn("run ended after the lease was lost; the next owner reports it");
      return "done";
    }
    if (active.interruptReason) {
      await this.finish(
        ref,
        data,
        "interrupted",
        { type: "run_interrupted", reason: active.interruptReason },
        {
          reason: active.interruptReason,
          usage: outcome.usage,
        },
      );
    } else if (outcome.status === "finished") {
      await this.finish(
        ref,
        data,
        "finished",
        { type: "run_finished", usage: outcome.usage, stopReason: outcome.stopReason },
        {
          usage: outcome.usage,
        },
      );
    } else if (outcome.status === "aborted") {
      await aborted();
    } else {
      const error = outcome.error ?? "run failed";
      await this.finish(
        ref,
        data,
        "failed",
        { type: "run_failed", error, usage: outcome.usage },
        {
          error,
          usage: outcome.usage,
        },
      );
    }
    return "done";
  }

  /**
   * Aborts the session's running run; returns its id when there was one. Its waiting extension
   * dialogs resolve to pi's defaults (an extension that did not pass the run's abort signal to
   * its dialog would otherwise hold the abort up).
   */
  async abort(sessionId: string, interruptReason?: string): Promise<string | undefined> {
    const active = this.active.get(sessionId);
    if (!active) return undefined;
    if (interruptReason) active.interruptReason = interruptReason;
    const aborting = active.session.abort();
    await this.host.uiBridge(sessionId)?.cancelAll();
    await aborting;
    return active.runId;
  }

  /**
   * Resolves once the run that started here on `sessionId` (still opening its session, or
   * running) has ended here — its end recorded, or given up on (a lost lease, a Redis failure),
   * and a deleted session let go of — or after `timeoutMs` (ms); at once when there is none. A
   * session deletion waits for it so that the run's end is recorded before its data goes.
   */
  async runEnded(sessionId: string, timeoutMs: number): Promise<void> {
    const ended = this.runEnds.get(sessionId);
    if (!ended) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([ended, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  /** Aborts every running run with an interrupt reason (lease loss, shutdown). */
  async abortAll(interruptReason: string): Promise<void> {
    await Promise.all([...this.active.keys()].map((id) => this.abort(id, interruptReason)));
  }

  private async finish(
    ref: SessionRef,
    data: RunJobData,
    status: RunStatus,
    event: WireEvent,
    fields: { usage?: RunUsage; error?: string; reason?: string },
  ): Promise<void> {
    try {
      const res = await this.recordEnd(ref, data, status, event, fields);
      if (!res) return;
      // Recorded, or no longer `running` (ended by someone else): either way nothing is left open.
      this.unrecorded.delete(data.runId);
      const t0 = this.startedAt.get(data.runId);
      if ("offset" in res && t0 !== undefined) {
        const seconds = (performance.now() - t0) / 1000;
        this.ctx.metrics.runDuration.observe({ state: status }, seconds);
        // The run's ids come from the log context (run-executor runs this inside it).
        this.ctx.logger.debug({ status, durationMs: Math.round(seconds * 1000) }, "run ended");
      }
    } catch (err) {
      if (!(err instanceof FencedError)) throw err;
    } finally {
      this.gate.wake(data.sessionId);
    }
  }

  /**
   * The fenced transition that records a run's end, retried through a Redis blip
   * ({@link FINISH_ATTEMPTS} attempts, backoff from {@link FINISH_BACKOFF_MS} doubling) while the
   * lease is held.
   * @returns the transition's result (`{rejected: "cancelled"}` when the run's record went with
   *   its deleted session: nothing is left to record), or undefined when it could not be recorded
   *   (the run stays `running` and in `unrecorded`: the next owner's reconcile, or a later run's
   *   deferral in this ownership, ends it — Takeover.failLostHead)
   * @throws FencedError when the lease was lost
   */
  private async recordEnd(
    ref: SessionRef,
    data: RunJobData,
    status: RunStatus,
    event: WireEvent,
    fields: { usage?: RunUsage; error?: string; reason?: string },
  ): Promise<Awaited<ReturnType<EventLog["transitionRun"]>> | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.ctx.events.transitionRun(
          ref,
          data.runId,
          this.lease.token,
          ["running"],
          status,
          { ...event, runId: data.runId, sessionId: data.sessionId },
          fields,
        );
      } catch (err) {
        if (err instanceof FencedError) throw err;
        // The run's record is gone with its deleted session: nothing left to record.
        if (err instanceof MissingRecordError) return { rejected: "cancelled" };
        if (attempt >= FINISH_ATTEMPTS || !this.lease.held) {
          this.ctx.logger.error({ err: (err as Error).message, status }, "could not record the run's end");
          return undefined;
        }
        await new Promise((resolve) => setTimeout(resolve, FINISH_BACKOFF_MS * 2 ** (attempt - 1)));
      }
    }
  }
}
