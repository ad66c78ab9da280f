/**
 * Everything a worker does for one project it owns: a BullMQ Worker on the project's queue
 * (concurrency = sessions that may run at once), the project's pi sessions, and the run executor.
 * It exists exactly as long as the project lease. On start it repairs what earlier owners left
 * (takeover.ts): runs still marked `running` under an older epoch become `run_interrupted` (never
 * re-run), and their stalled jobs are failed by BullMQ (`maxStalledCount: 0`) and handled the same
 * way, or re-queued if they never started. After a clean release (the lease says so) there is
 * nothing to repair and the consumer starts at once (docs/leases.md).
 */

import type { ProjectLease } from "@pi-fleet/leases";
import type { CommandResult, PromptImage, UiAnswer } from "@pi-fleet/pi-runtime";
import { projectQueueOptions, queueOptions, type RunJobData } from "@pi-fleet/queue";
import { DelayedError, type Job, Queue, WaitingError, Worker } from "bullmq";
import { EagerStart } from "./eager-start.ts";
import { RunExecutor } from "./run-executor.ts";
import { RunningCommands } from "./running-commands.ts";
import { WorkerSessionFiles } from "./session-files.ts";
import { SessionGate } from "./session-gate.ts";
import { SessionHost } from "./session-host.ts";
import { Takeover } from "./takeover.ts";
import type { UiAnswerOutcome } from "./ui-bridge.ts";
import type { WorkerContext } from "./worker-context.ts";

/**
 * How long a session deletion's `forget_session` waits for the aborted run's end to be recorded
 * (ms): under the gateway's 2 s wait for the answer (apps/gateway/src/purge.ts).
 */
const FORGET_RUN_END_WAIT_MS = 1500;

/** Delay before a run throttled by its org's run quota is tried again (ms). */
const THROTTLE_RETRY_MS = 500;

/** The answer of a command stopped before it started (its org was disabled meanwhile). */
const COMMAND_STOPPED = "The command was stopped before it started: the org is disabled";

const MODEL_COMMANDS = new Set(["set_model", "cycle_model", "set_thinking_level", "cycle_thinking_level"]);

/**
 * Why an ownership ended: the lease was lost, the project went idle, the worker shuts down, or
 * the owner yielded it because its org is at its run quota (so other orgs' projects get owners).
 */
export type StopReason = "lost" | "released" | "shutdown" | "yielded";

/** Runs one owned project. */
export class ProjectRunner {
  readonly org: string;
  readonly project: string;
  private readonly shouldYield: () => Promise<boolean>;
  readonly lease: ProjectLease;
  private readonly ctx: WorkerContext;
  private readonly host: SessionHost;
  private readonly executor: RunExecutor;
  /** Start order of each session's runs, and its deferred runs (session-gate.ts). */
  private readonly gate: SessionGate;
  private readonly stopController = new AbortController();
  private worker: Worker<RunJobData> | undefined;
  /** Producer-side handle on the project queue (counts, re-queueing). */
  private readonly queue: Queue<RunJobData>;
  /** Repairs what earlier owners left (takeover.ts). */
  private readonly takeover: Takeover;
  private resolveDone!: (reason: StopReason) => void;
  /** Resolves when the runner should end; the owner then closes it. */
  readonly done: Promise<StopReason>;
  /** Whether what earlier owners left was reconciled completely (or there was nothing to do). */
  private reconciled = false;
  /** Whether the last close() completed every step in time (set by close). */
  private closedInTime = false;
  /** Session commands in flight (idle release, session eviction, abortCommands). */
  private readonly commands = new RunningCommands();

  /**
   * @param shouldYield asked when a run is throttled by its org's quota and nothing of this project
   *   runs here: true hands the project back (other projects are waiting for this owner's slot)
   */
  constructor(
    ctx: WorkerContext,
    lease: ProjectLease,
    shouldYield: () => Promise<boolean> = async () => false,
  ) {
    this.shouldYield = shouldYield;
    this.ctx = ctx;
    this.lease = lease;
    this.org = lease.org;
    this.project = lease.project;
    this.host = new SessionHost(ctx, lease.org, lease.project, lease);
    this.gate = new SessionGate(ctx.events);
    this.executor = new RunExecutor(ctx, lease, this.host, this.gate);
    this.queue = new Queue<RunJobData>(ctx.keys.projectTag(lease.org, lease.project), {
      connection: ctx.bullmq,
      ...projectQueueOptions(ctx.keys.queuePrefix),
    });
    this.takeover = new Takeover(ctx, lease, this.queue, (runId) => this.executor.isLive(runId));
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
    lease.onLost((reason) => {
      ctx.logger.warn({ org: this.org, project: this.project, reason }, "project lease lost");
      ctx.metrics.leaseLost(reason);
      void this.executor.abortAll("lease_lost");
      this.stop("lost");
    });
  }

  /**
   * Reconciles the previous owner's runs (skipped after a clean release: nothing to do) and starts
   * consuming the project queue.
   */
  async start(): Promise<void> {
    this.reconciled = this.lease.previousClean || (await this.takeover.reconcile());
    // Up to PI_FLEET_PROJECT_MAX_RUNS runs at once; a run reaching an idle project starts without
    // BullMQ's look-ahead fetch first (eager-start.ts).
    const eager = new EagerStart(this.ctx.env.PI_FLEET_PROJECT_MAX_RUNS);
    const worker = new Worker<RunJobData>(
      this.ctx.keys.projectTag(this.org, this.project),
      eager.wrap((job: Job<RunJobData>, token?: string) => this.process(job, token)),
      {
        connection: this.ctx.bullmq,
        // Not projectQueueOptions: a consumer needs BullMQ's Redis version check (see there).
        ...queueOptions(this.ctx.keys.queuePrefix),
        concurrency: eager.initial,
        lockDuration: Math.max(this.ctx.env.PI_FLEET_LEASE_TTL_MS, 1000),
        stalledInterval: Math.max(250, Math.floor(this.ctx.env.PI_FLEET_LEASE_TTL_MS / 3)),
        maxStalledCount: 0,
        autorun: false,
      },
    );
    worker.on("failed", (job, err) => {
      if (job && /stalled/i.test(err.message)) {
        void this.takeover
          .handleStalled(job)
          .catch((e: Error) =>
            this.ctx.logger.warn({ err: e.message, project: this.project }, "could not handle a stalled job"),
          );
      }
    });
    worker.on("error", (err) =>
      this.ctx.logger.warn({ err: err.message, project: this.project }, "project worker error"),
    );
    eager.attach(worker);
    this.worker = worker;
    void worker.run();
  }

  /** Asks the runner to end (the owner closes it). */
  stop(reason: StopReason): void {
    this.stopController.abort();
    this.resolveDone(reason);
  }

  /** Aborts a session's running run. */
  abortSession(sessionId: string): Promise<string | undefined> {
    return this.executor.abort(sessionId);
  }

  /** Number of runs running here now. */
  get running(): number {
    return this.executor.active.size;
  }

  /**
   * Stops every run running here now; each ends `run_interrupted {reason}` (an operator disabled
   * the org: `org_disabled`). Runs not started yet are left to the queue (start-run refuses a
   * disabled org's). Resolves once pi has stopped them; their ends are recorded as each run returns.
   */
  interruptRuns(reason: string): Promise<void> {
    return this.executor.abortAll(reason);
  }

  /** Number of session commands in flight here now (see command()). */
  get commandsRunning(): number {
    return this.commands.size;
  }

  /**
   * Stops every session command in flight here now, without waiting for them (an operator
   * disabled the org): a user `bash` answers pi's cancelled result (`{cancelled: true}`, no exit
   * code), a `compact` answers "Compaction cancelled" (PiSession.abortCommands); other commands
   * are short and finish. A command whose session is still opening is not started (it answers
   * that it was stopped). Runs are left alone (interruptRuns). Never throws.
   * @returns how many commands this stopped (RunningCommands.abortAll)
   */
  abortCommands(): number {
    return this.commands.abortAll();
  }

  /**
   * Delivers a steer / follow-up message (text and optional images) into the session's running run.
   * @returns the run it joined, or undefined when the session is idle (the caller queues a prompt)
   */
  async deliver(
    sessionId: string,
    text: string,
    mode: "steer" | "followUp",
    images?: PromptImage[],
  ): Promise<string | undefined> {
    const active = this.executor.active.get(sessionId);
    if (!active?.session.isStreaming) return undefined;
    if (mode === "steer") await active!.session.steer(text, images);
    else await active!.session.followUp(text, images);
    return active!.runId;
  }

  /**
   * Runs a pi command on the session (opening it if needed). Model and thinking changes are
   * written back to the registry so the next run keeps them. fork, clone and new_session create
   * their new session through WorkerSessionFiles (file, registry record, activity event).
   * abortCommands() stops a running `bash` or `compact` (it then answers pi's cancelled result).
   */
  async command(sessionId: string, request: { type: string; [k: string]: unknown }): Promise<CommandResult> {
    // A command keeps the project from idle release while it runs, and counts as activity.
    const running = this.commands.begin(sessionId, request.type);
    try {
      const session = await this.host.acquire(sessionId);
      // Stopped while its session opened (the org was disabled): never handed to pi.
      if (running.stopped) return { success: false, error: COMMAND_STOPPED };
      const answer = session.command(request, new WorkerSessionFiles(this.ctx, this.lease, sessionId));
      // pi registered a bash's or compact's abort synchronously inside command(): from here on
      // abortCommands() reaches it.
      running.attach(session);
      const result = await answer;
      if (result.success && MODEL_COMMANDS.has(request.type)) {
        const settings = session.settings();
        // Fenced: an ex-owner's late answer does not overwrite what the new owner records.
        await this.ctx.registry.updateSessionSettings(
          this.org,
          this.project,
          sessionId,
          {
            provider: settings.model?.provider,
            modelId: settings.model?.id,
            thinkingLevel: settings.thinkingLevel,
          },
          this.lease.token,
        );
      }
      return result;
    } finally {
      running.end();
    }
  }

  /**
   * Disposes the sessions no run or command used for `idleMs` (PI_FLEET_SESSION_IDLE_MS): a
   * project that is never idle would otherwise keep every session it ever ran open.
   * @returns how many were disposed
   */
  evictIdleSessions(idleMs: number): Promise<number> {
    return this.host.evictIdle(
      idleMs,
      (sessionId) => this.executor.active.has(sessionId) || this.commands.has(sessionId),
    );
  }

  /**
   * Delivers a client's answer to a session's extension dialog (control `ui_response`). A pending
   * entry no dialog here waits for (its session is not open on this owner) is stale: removed.
   */
  async answerUi(sessionId: string, requestId: string, answer: UiAnswer): Promise<UiAnswerOutcome> {
    const bridge = this.host.uiBridge(sessionId);
    if (bridge) return bridge.answer(requestId, answer);
    await this.ctx.registry.resolvePendingUi(this.org, this.project, sessionId, requestId, "cancelled");
    return "unknown";
  }

  /**
   * Control `forget_session` (the session was deleted): no run or command opens it again here
   * (also one waiting for it to open), its running run is aborted and its end recorded (abort and
   * end waited for up to {@link FORGET_RUN_END_WAIT_MS} in all: the gateway deletes the run
   * records once this answers, and its own wait is 2 s), and it is disposed and its transcript removed
   * (SessionHost.forgetDeleted).
   */
  async forgetSession(sessionId: string): Promise<void> {
    // The wait is counted from here: the abort itself (pi's, its dialogs') counts against it.
    const until = performance.now() + FORGET_RUN_END_WAIT_MS;
    this.host.markDeleted(sessionId);
    await this.executor.abort(sessionId);
    await this.executor.runEnded(sessionId, Math.max(0, until - performance.now()));
    await this.host.forgetDeleted(sessionId);
  }

  /**
   * Stops consuming and ends the project's work: running runs may finish until `deadline`
   * (monotonic ms; drain), then what still runs is interrupted with `reason`. Runs waiting for
   * their turn go back to the queue. Sessions are disposed.
   */
  async close(reason: StopReason, deadline = 0): Promise<void> {
    const worker = this.worker;
    // Every step is bounded: with Redis unreachable, BullMQ calls can wait indefinitely, and an
    // ownership that never ends would keep its project from every other owner.
    if (worker) await bounded(worker.pause(true), 2000);
    if (reason !== "lost") {
      while (this.executor.active.size > 0 && performance.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    }
    this.stop(reason);
    const steps = [await bounded(this.executor.abortAll(reason === "lost" ? "lease_lost" : reason), 10_000)];
    if (worker) steps.push(await closeBounded(worker));
    steps.push(await bounded(this.queue.close(), 2000));
    steps.push(await bounded(this.host.close(), 10_000));
    this.closedInTime = steps.every(Boolean);
  }

  /**
   * After close(): true when this ownership leaves nothing for the next owner to reconcile —
   * what earlier owners left was reconciled, every close step finished in time, no run is
   * running and no job fetched here, and every run started here has its end recorded. The owner
   * then releases the lease as clean.
   */
  get leftClean(): boolean {
    const e = this.executor;
    return this.reconciled && this.closedInTime && e.inFlight === 0 && e.active.size === 0 && e.allRecorded;
  }

  /**
   * Runs waiting to start (metrics): jobs waiting, prioritized or delayed (deferred behind their
   * session's open run, or throttled by the org quota) in the queue, plus jobs fetched here that
   * have not started yet (waiting for their turn, a worker slot or the quota).
   */
  async pendingRuns(): Promise<number> {
    const counts = await this.queue.getJobCounts("wait", "prioritized", "delayed");
    const fetched = Math.max(0, this.executor.inFlight - this.executor.active.size);
    return Object.values(counts).reduce((a, b) => a + b, 0) + fetched;
  }

  /**
   * True when the project has had nothing to do for `idleMs`: no job or command in flight here,
   * no run or command in the last `idleMs`, and no job active, waiting, delayed or prioritized in
   * its queue (queues-and-streams.md §3.4 pitfall 1).
   */
  async idleFor(idleMs: number): Promise<boolean> {
    const lastActivity = Math.max(this.executor.lastActivity, this.commands.lastAt);
    if (this.executor.inFlight > 0 || this.commands.size > 0 || performance.now() - lastActivity < idleMs)
      return false;
    const counts = await this.queue.getJobCounts("active", "wait", "delayed", "prioritized");
    return Object.values(counts).every((n) => n === 0);
  }

  private async process(job: Job<RunJobData>, token?: string): Promise<void> {
    const jobId = job.id ?? job.data.runId;
    this.gate.settled(job.data.sessionId, jobId);
    const outcome = await this.executor.execute(job.data, this.stopController.signal);
    if (outcome === "done" || !token) return;
    if (outcome === "requeue") {
      // Never started here (stopping, or the lease is gone): hand the job back to the queue so the
      // next owner runs it (runs of a session still start in sequence order).
      await job.moveToWait(token);
      throw new WaitingError();
    }
    // Not its session's turn yet (retry shortly), or its org is at its run quota (retry later).
    const headFailed =
      outcome === "defer" &&
      (await this.takeover.failLostHead(job.data).catch((err: Error) => {
        this.ctx.logger.warn({ err: err.message, project: this.project }, "could not check for a lost run");
        return false;
      }));
    await job.moveToDelayed(
      Date.now() + (outcome === "throttle" ? THROTTLE_RETRY_MS : this.ctx.env.PI_FLEET_DEFER_RETRY_MS),
      token,
    );
    // Deferred behind its session's open run: the end of that run here promotes it (session-gate.ts).
    if (outcome === "defer") {
      this.gate.defer(job.data.sessionId, jobId, job.data.seq, () => job.promote());
      // The run it waited for was lost and has just been ended here: go on at once. Otherwise
      // look once whether it ended while this job was being moved (nothing promoted it then).
      if (headFailed) this.gate.wake(job.data.sessionId);
      else {
        const ref = { org: this.org, project: this.project, session: job.data.sessionId };
        await this.gate.recheckDeferred(ref, job.data.runId);
      }
    }
    // An org at its quota must not sit on owners' project slots while other orgs' projects wait
    // for an owner: with nothing of this project running here, hand the project back. The owner
    // asks for a new owner after a pause, at the back of the dispatch queue (ownership.ts).
    if (
      outcome === "throttle" &&
      this.executor.active.size === 0 &&
      this.executor.inFlight === 0 &&
      (await this.shouldYield().catch(() => false))
    ) {
      this.stop("yielded");
    }
    throw new DelayedError();
  }
}

/**
 * `Worker.close()` waits for its blocking connection with no timeout of its own (it hung while
 * Redis was unreachable): give it a moment, then force it — every processor has ended by now.
 * @returns true when the orderly close finished in time (false after forcing it)
 */
async function closeBounded(worker: Worker<RunJobData>): Promise<boolean> {
  if (await bounded(worker.close(), 2000)) return true;
  await bounded(worker.close(true), 2000);
  return false;
}

/** Waits for `p` at most `ms`; true when it settled (either way) in time. Never rejects. */
async function bounded(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = p.then(
    () => true,
    () => true,
  );
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const done = await Promise.race([settled, timeout]);
  clearTimeout(timer);
  return done;
}
