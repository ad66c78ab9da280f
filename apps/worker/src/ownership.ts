/**
 * Sticky project affinity (queues-and-streams.md §3.3). A worker with a free slot takes an
 * "own" job from the dispatch queue, acquires the project lease (epoch + 1) and keeps the job
 * active for as long as it owns the project: the job's deduplication id keeps every other worker
 * away, and if this worker dies BullMQ's stalled check re-delivers the job to another worker,
 * which takes the expired lease over. The lease — not the job — is the authority for fencing.
 */

import { type OwnJobData, ownJobOptions, projectQueueOptions, queueOptions } from "@pi-fleet/queue";
import { type Job, Queue, Worker } from "bullmq";
import { EagerStart } from "./eager-start.ts";
import { ProjectRunner, type StopReason } from "./project-runner.ts";
import type { WorkerContext } from "./worker-context.ts";

const key = (org: string, project: string) => `${org}.${project}`;

/** Owns projects for one worker process. */
export class Ownership {
  private readonly ctx: WorkerContext;
  private readonly runners = new Map<string, ProjectRunner>();
  private dispatchWorker: Worker<OwnJobData> | undefined;
  private readonly dispatchQueue: Queue<OwnJobData>;
  private stopping = false;
  private drainDeadline = 0;
  /** Ownerships being wound down (awaited by close). */
  private readonly ending = new Set<Promise<void>>();
  /** The current ownership of each project, resolved when it has fully ended. */
  private readonly finishing = new Map<string, Promise<void>>();
  /** Dispatch re-checks in flight (awaited by close, before Redis goes away). */
  private readonly rechecks = new Set<Promise<void>>();
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(ctx: WorkerContext) {
    this.ctx = ctx;
    this.dispatchQueue = new Queue<OwnJobData>(ctx.keys.dispatchQueue, {
      connection: ctx.bullmq,
      ...queueOptions(ctx.keys.queuePrefix),
    });
  }

  /** Number of projects owned now. */
  get owned(): number {
    return this.runners.size;
  }

  /** Whether this worker's project slots are full while projects wait for an owner. */
  private async slotsWanted(): Promise<boolean> {
    if (this.runners.size < this.ctx.env.PI_FLEET_MAX_PROJECTS) return false;
    return (await this.ctx.redis.llen(this.ctx.keys.dispatchWaitList)) > 0;
  }

  /** Runs of the owned projects waiting to start (metrics; see ProjectRunner.pendingRuns). */
  async pendingRuns(): Promise<number> {
    const counts = await Promise.all([...this.runners.values()].map((r) => r.pendingRuns().catch(() => 0)));
    return counts.reduce((a, b) => a + b, 0);
  }

  /** Orgs with a run or a session command running on this worker now. */
  runningOrgs(): Set<string> {
    const orgs = new Set<string>();
    for (const runner of this.runners.values()) {
      if (runner.running > 0 || runner.commandsRunning > 0) orgs.add(runner.org);
    }
    return orgs;
  }

  /**
   * Stops the session commands of `org` in flight on this worker now (user `bash`, `compact`:
   * ProjectRunner.abortCommands), across its owned projects, without waiting for them to end.
   * Never throws. @returns how many commands were in flight and not stopped before
   */
  abortOrgCommands(org: string): number {
    let stopped = 0;
    for (const runner of this.runners.values()) if (runner.org === org) stopped += runner.abortCommands();
    return stopped;
  }

  /**
   * Interrupts every run of `org` running on this worker (`run_interrupted {reason}`), across its
   * owned projects. @returns how many runs were running
   */
  async interruptOrg(org: string, reason: string): Promise<number> {
    const runners = [...this.runners.values()].filter((r) => r.org === org && r.running > 0);
    const count = runners.reduce((n, r) => n + r.running, 0);
    await Promise.all(runners.map((r) => r.interruptRuns(reason)));
    return count;
  }

  /** The runner of an owned project. */
  runner(org: string, project: string): ProjectRunner | undefined {
    return this.runners.get(key(org, project));
  }

  /** Starts taking "own" jobs. */
  start(): void {
    const ttl = this.ctx.env.PI_FLEET_LEASE_TTL_MS;
    // At most PI_FLEET_MAX_PROJECTS "own" jobs (owned projects) at once; an idle consumer starts a
    // fetched one without BullMQ's look-ahead fetch first (eager-start.ts).
    const eager = new EagerStart(this.ctx.env.PI_FLEET_MAX_PROJECTS);
    const worker = new Worker<OwnJobData>(
      this.ctx.keys.dispatchQueue,
      eager.wrap((job) => this.own(job)),
      {
        connection: this.ctx.bullmq,
        ...queueOptions(this.ctx.keys.queuePrefix),
        concurrency: eager.initial,
        // The job's lock is the dead-owner detector: renewed as often as the lease (not BullMQ's
        // default lockDuration / 2), so it lapses at most TTL/3 after the lease does, and checked
        // every TTL/6 (BullMQ re-delivers a job on the first check after its lock lapsed that
        // follows one which saw it active): a dead owner's projects move about 0.5 s sooner.
        lockDuration: Math.max(ttl, 1000),
        lockRenewTime: Math.max(100, Math.floor(ttl / 3)),
        stalledInterval: Math.max(250, Math.floor(ttl / 6)),
        maxStalledCount: 1_000_000,
      },
    );
    eager.attach(worker);
    worker.on("completed", (job) => this.track(this.recheck(job.data)));
    worker.on("failed", (job) => job && this.track(this.recheck(job.data)));
    worker.on("error", (err) => this.ctx.logger.warn({ err: err.message }, "dispatch worker error"));
    this.dispatchWorker = worker;
    const idleMs = this.ctx.env.PI_FLEET_IDLE_RELEASE_MS;
    const sessionIdleMs = this.ctx.env.PI_FLEET_SESSION_IDLE_MS;
    this.idleTimer = setInterval(
      () => void this.releaseIdle(idleMs),
      Math.max(50, Math.min(5000, idleMs / 2, sessionIdleMs / 2)),
    );
    this.idleTimer.unref();
  }

  /** Releases projects that had no work for `idleMs`. */
  private async releaseIdle(idleMs: number): Promise<void> {
    for (const runner of this.runners.values()) {
      if (await runner.idleFor(idleMs).catch(() => false)) runner.stop("released");
      else await runner.evictIdleSessions(this.ctx.env.PI_FLEET_SESSION_IDLE_MS).catch(() => 0);
    }
  }

  /**
   * Drains: stops taking projects and runs, lets running runs finish within `drainMs`, interrupts
   * the rest (`run_interrupted {reason: "shutdown"}`), releases every lease at once so other
   * workers continue the queues, then closes.
   */
  async close(drainMs = 0): Promise<void> {
    this.stopping = true;
    this.drainDeadline = performance.now() + drainMs;
    await this.dispatchWorker?.pause(true).catch(() => undefined);
    for (const runner of this.runners.values()) runner.stop("shutdown");
    await Promise.all([...this.ending]);
    await this.dispatchWorker?.close().catch(() => undefined);
    // Hand-offs re-signal dispatch from "completed" handlers: let them reach Redis before it closes.
    while (this.rechecks.size > 0) await Promise.all([...this.rechecks]);
    await this.dispatchQueue.close().catch(() => undefined);
    clearInterval(this.idleTimer);
  }

  private track(p: Promise<void>): void {
    this.rechecks.add(p);
    void p.finally(() => this.rechecks.delete(p));
  }

  /** Releases one project (it is being deleted, or an operator asked). */
  release(org: string, project: string): boolean {
    const runner = this.runners.get(key(org, project));
    runner?.stop("released");
    return runner !== undefined;
  }

  /** Processes one "own" job: holds the project until the lease is lost or released. */
  private async own(job: Job<OwnJobData>): Promise<void> {
    const { org, project } = job.data;
    // A previous ownership of this project may still be winding down (its job was re-delivered
    // after a Redis outage): wait for it instead of dropping this job, or nobody would own it.
    const previous = this.finishing.get(key(org, project));
    if (previous) await previous;
    if (this.stopping) return;
    const lease = await this.acquire(org, project);
    if (!lease) return;
    if (this.stopping) {
      // close() began while the lease was being taken: it has already stopped the runners it
      // saw and would wait for this job for ever. Give the project back at once (as clean as it
      // was found: nothing ran).
      await lease.release(lease.previousClean);
      return;
    }
    const runner = new ProjectRunner(this.ctx, lease, () => this.slotsWanted());
    this.runners.set(key(org, project), runner);
    const log = this.ctx.logger.child({ org, project, epoch: lease.epoch });
    let reason: StopReason = "released";
    let ended: () => void = () => {};
    const finished = new Promise<void>((resolve) => {
      ended = resolve;
    });
    this.ending.add(finished);
    this.finishing.set(key(org, project), finished);
    void finished.then(() => {
      this.ending.delete(finished);
      if (this.finishing.get(key(org, project)) === finished) this.finishing.delete(key(org, project));
    });
    try {
      await runner.start();
      log.info({ previousRelease: lease.previousClean ? "clean" : "reconciled" }, "project owned");
      await this.ctx.redis
        .publish(this.ctx.keys.ownerAnnounce(org, project), this.ctx.workerId)
        .catch(() => 0);
      reason = await runner.done;
    } finally {
      // A yielded project had nothing running; a run that slipped in meanwhile may still finish.
      await runner.close(reason, reason === "yielded" ? performance.now() + 30_000 : this.drainDeadline);
      this.runners.delete(key(org, project));
      await lease.release(runner.leftClean);
      log.info({ reason }, "project released");
      ended();
    }
  }

  /** Takes the lease, waiting out a dead owner's remaining TTL (bounded). */
  private async acquire(org: string, project: string) {
    for (let attempt = 0; attempt < 4 && !this.stopping; attempt++) {
      const res = await this.ctx.leases.acquire(org, project);
      if ("lease" in res) return res.lease;
      const wait = res.pttlMs > 0 ? res.pttlMs + 20 : 50;
      await new Promise((resolve) =>
        setTimeout(resolve, Math.min(wait, this.ctx.env.PI_FLEET_LEASE_TTL_MS + 50)),
      );
    }
    return undefined;
  }

  /**
   * After an "own" job ended: if the project still has work, ask for an owner again (closes
   * the race where a run was added while the old job still deduplicated new ones).
   */
  private async recheck(data: OwnJobData): Promise<void> {
    try {
      const q = new Queue(this.ctx.keys.projectTag(data.org, data.project), {
        connection: this.ctx.bullmq,
        ...projectQueueOptions(this.ctx.keys.queuePrefix),
        // Only counts: writing the queue's meta hash would recreate it for a project deleted meanwhile.
        skipMetasUpdate: true,
      });
      const counts = await q
        .getJobCounts("active", "wait", "delayed", "prioritized")
        .finally(() => q.close().catch(() => undefined));
      const pending = Object.values(counts).reduce((a, b) => a + b, 0);
      if (pending > 0 && !this.runners.has(key(data.org, data.project))) {
        // (A project yielded by an org at its run quota goes to the back of the dispatch queue.)
        await this.dispatchQueue.add("own", data, ownJobOptions(data.org, data.project));
      }
    } catch (err) {
      this.ctx.logger.warn({ err: (err as Error).message }, "dispatch recheck failed");
    }
  }
}
