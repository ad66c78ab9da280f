/**
 * What earlier owners of a project left behind, repaired by its new owner (docs/leases.md, failure
 * table): runs they were running become `run_interrupted {reason: "worker_lost"}` (never re-run),
 * jobs they fetched but never started are queued again, extension dialogs they left pending are
 * withdrawn, and a run a gateway recorded but never queued (a lost run) is failed once it is old
 * enough. Every write is fenced by the new owner's lease.
 */

import type { ProjectLease } from "@pi-fleet/leases";
import { isHeavyRunJob, type RunJobData, runJobOptions } from "@pi-fleet/queue";
import type { Job, Queue } from "bullmq";
import type { WorkerContext } from "./worker-context.ts";

/** Takeover repairs for one ownership of a project. */
export class Takeover {
  private readonly ctx: WorkerContext;
  private readonly lease: ProjectLease;
  private readonly queue: Queue<RunJobData>;
  private readonly org: string;
  private readonly project: string;
  private readonly isLive: (runId: string) => boolean;

  /**
   * @param queue producer-side handle on the project's run queue
   * @param isLive whether a run is being started or runs on this owner (RunExecutor.isLive)
   */
  constructor(
    ctx: WorkerContext,
    lease: ProjectLease,
    queue: Queue<RunJobData>,
    isLive: (runId: string) => boolean,
  ) {
    this.ctx = ctx;
    this.lease = lease;
    this.queue = queue;
    this.isLive = isLive;
    this.org = lease.org;
    this.project = lease.project;
  }

  /**
   * The run `d` waits behind may be lost, and would hold its session forever:
   * - recorded `queued` by a gateway that died before it added the run's job (docs/leases.md,
   *   failure table): recorded `failed` when it is older than PI_FLEET_LOST_RUN_MS and no job of
   *   it exists in the queue: neither its own (id = run id, in any state) nor a retry an owner
   *   queued for it (`<runId>-e<epoch>`: this ownership's by id, an earlier one's by a scan of the
   *   open jobs' ids, a rare path bounded by the project's queue cap);
   * - recorded `running` under this lease but not live here: stranded by a Redis error (the answer
   *   of its start, or every attempt to record its end, was lost): recorded `interrupted`
   *   (`worker_error`).
   * @returns true when it ended the head run
   */
  async failLostHead(d: RunJobData): Promise<boolean> {
    const ref = { org: this.org, project: this.project, session: d.sessionId };
    const [head] = await this.ctx.events.openRuns(ref);
    if (!head || head === d.runId) return false;
    const run = await this.ctx.events.getRun(this.org, this.project, head);
    if (run?.status === "running" && run.epoch === this.lease.epoch && !this.isLive(head)) {
      this.ctx.logger.warn({ org: this.org, project: this.project, runId: head }, "ending a stranded run");
      return this.interrupt(d.sessionId, head, "worker_error");
    }
    if (run?.status !== "queued" || Date.now() - run.createdAt < this.ctx.env.PI_FLEET_LOST_RUN_MS)
      return false;
    const jobs = await Promise.all([
      this.queue.getJob(head),
      this.queue.getJob(`${head}-e${this.lease.epoch}`),
    ]);
    if (jobs.some((job) => job !== undefined)) return false;
    // Ids only (a job's data may carry images): retry ids are `<runId>-e<epoch>`.
    const open = await this.queue.getRanges(["wait", "delayed", "prioritized", "active"], 0, -1);
    if (open.some((id) => id.startsWith(`${head}-e`))) return false;
    const error = "the run never reached the queue (the gateway failed while queueing it)";
    const res = await this.ctx.events.transitionRun(
      ref,
      head,
      this.lease.token,
      ["queued"],
      "failed",
      { type: "run_failed", runId: head, sessionId: d.sessionId, error },
      { error },
    );
    if (!("offset" in res)) return false;
    this.ctx.logger.warn({ org: this.org, project: this.project, session: d.sessionId, runId: head }, error);
    return true;
  }

  /**
   * A job of a dead owner was found stalled: report the run interrupted, or re-queue it if it
   * never started. Rejects when Redis fails (the caller logs it; the lost-run path or the next
   * owner's reconcile covers the run).
   */
  async handleStalled(job: Job<RunJobData>): Promise<void> {
    const d = job.data;
    const run = await this.ctx.events.getRun(d.org, d.project, d.runId);
    if (!run) return;
    // Started by an earlier owner: interrupted with it. Started under this lease (by the retry
    // `reconcile` queued, or by this owner's own job whose lock lapsed): it is alive here.
    if (run.status === "running" && run.epoch !== this.lease.epoch) {
      await this.interrupt(d.sessionId, d.runId, "worker_lost");
    }
    if (run.status === "queued") await this.retryFetched(d);
  }

  /**
   * Queues again a run that an earlier owner fetched but never started. The job id is fixed for
   * this ownership (`<runId>-e<epoch>`), so the reconcile at takeover and the stalled handler add it
   * once; a duplicate in a later ownership is harmless (start-run starts a run once).
   */
  private async retryFetched(d: RunJobData): Promise<void> {
    await this.queue.add("run", d, {
      ...runJobOptions(d.runId, isHeavyRunJob(d)),
      jobId: `${d.runId}-e${this.lease.epoch}`,
    });
  }

  /**
   * Runs recorded `running` under an older epoch were interrupted by their owner's death, and
   * the extension dialogs it left pending can never be answered: they are withdrawn. Sessions are
   * independent, so their checks go out together (a cold start is one round trip per step, not per
   * session: it sits on the cold-dispatch path). Jobs an earlier owner fetched but never started
   * are queued again.
   * @returns false when something could not be recorded (the next owner must reconcile again,
   *   so this ownership may not release as clean)
   */
  async reconcile(): Promise<boolean> {
    const [sessions] = await Promise.all([this.reconcileSessions(), this.retryFetchedJobs()]);
    if (sessions.interrupted) this.ctx.metrics.failovers.inc();
    return sessions.complete;
  }

  /**
   * Jobs still active in the queue now were fetched by an earlier owner (this owner's consumer has
   * not started). BullMQ would hand them back only after its stalled check saw them twice
   * (`stalledInterval` apart, after their lock expired): a run among them that never started is
   * retried at once, so runs queued behind a dead owner's run continue as soon as the lease moves.
   */
  private async retryFetchedJobs(): Promise<void> {
    const fetched = await this.queue.getJobs(["active"]);
    await Promise.all(
      fetched.map(async (job) => {
        const d = job.data;
        const run = await this.ctx.events.getRun(d.org, d.project, d.runId);
        if (run?.status === "queued") await this.retryFetched(d);
      }),
    );
  }

  /**
   * @returns interrupted: whether a run of an earlier owner was interrupted; complete: false when
   *   an interruption could not be recorded (the next owner must reconcile again)
   */
  private async reconcileSessions(): Promise<{ interrupted: boolean; complete: boolean }> {
    const { org, project } = this;
    const sessions = await this.ctx.redis.zrange(this.ctx.keys.sessions(org, project), "0", "-1");
    const outcomes = await Promise.all(
      sessions.map(async (sessionId) => {
        const [, record] = await Promise.all([
          this.ctx.registry.clearPendingUi(org, project, sessionId),
          this.ctx.registry.getSession(org, project, sessionId),
        ]);
        if (!record?.activeRun) return "none";
        const run = await this.ctx.events.getRun(org, project, record.activeRun);
        if (run?.status !== "running" || run.epoch === this.lease.epoch) return "none";
        return (await this.interrupt(sessionId, run.id, "worker_lost")) ? "interrupted" : "failed";
      }),
    );
    return { interrupted: outcomes.includes("interrupted"), complete: !outcomes.includes("failed") };
  }

  /** Records a run of an earlier owner `interrupted`; false when that could not be written. */
  private async interrupt(sessionId: string, runId: string, reason: string): Promise<boolean> {
    return this.ctx.events
      .transitionRun(
        { org: this.org, project: this.project, session: sessionId },
        runId,
        this.lease.token,
        ["running"],
        "interrupted",
        { type: "run_interrupted", runId, sessionId, reason },
        { reason },
      )
      .then(
        () => true,
        (err: Error) => {
          this.ctx.logger.warn({ err: err.message }, "could not mark run interrupted");
          return false;
        },
      );
  }
}
