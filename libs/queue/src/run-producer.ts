/**
 * Gateway side of the queues: adds run jobs to per-project queues and wakes an owner through
 * the dispatch queue. Queue objects are cheap (they share one connection) and cached per project.
 */

import type { Keys, Redis } from "@pi-fleet/redis";
import { Queue } from "bullmq";
import type { MaintenanceJobData, OwnJobData, RunJobData } from "./jobs.ts";
import {
  isHeavyRunJob,
  MAINTENANCE_QUEUE,
  ownJobOptions,
  projectQueueOptions,
  queueOptions,
  runJobOptions,
} from "./jobs.ts";

/** Enqueues runs for any project. */
export class RunProducer {
  private readonly connection: Redis;
  private readonly keys: Keys;
  private readonly queues = new Map<string, Queue<RunJobData>>();
  private readonly dispatch: Queue<OwnJobData>;
  private readonly maintenance: Queue<MaintenanceJobData>;

  /** @param connection a `bullmq`-role connection shared by every queue object */
  constructor(connection: Redis, keys: Keys) {
    this.connection = connection;
    this.keys = keys;
    this.dispatch = new Queue<OwnJobData>(keys.dispatchQueue, {
      connection,
      ...queueOptions(keys.queuePrefix),
    });
    this.maintenance = new Queue<MaintenanceJobData>(MAINTENANCE_QUEUE, {
      connection,
      ...queueOptions(keys.queuePrefix),
    });
  }

  /** The project's run queue (created on first use). */
  projectQueue(org: string, project: string): Queue<RunJobData> {
    const name = this.keys.projectTag(org, project);
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue<RunJobData>(name, {
        connection: this.connection,
        ...projectQueueOptions(this.keys.queuePrefix),
      });
      this.queues.set(name, q);
    }
    return q;
  }

  /** Adds the run job, then signals dispatch so an owner picks the project up. */
  async enqueue(data: RunJobData): Promise<void> {
    // Both commands go out together (one connection, pipelined); the order does not matter: an
    // owner that attaches before the job exists simply receives it when it lands.
    await Promise.all([
      this.projectQueue(data.org, data.project).add(
        "run",
        data,
        runJobOptions(data.runId, isHeavyRunJob(data)),
      ),
      this.requestOwner(data.org, data.project),
    ]);
  }

  /** Asks for an owner of the project (a no-op while an owner holds its dispatch job). */
  async requestOwner(org: string, project: string): Promise<void> {
    await this.dispatch.add("own", { org, project }, ownJobOptions(org, project));
  }

  /**
   * Queues a housekeeping job for any worker, to run after `delayMs` (ms; default at once). A job
   * that throws is tried again up to 5 times, 5 s, 10 s, 20 s, 40 s and 80 s later.
   */
  async requestMaintenance(job: MaintenanceJobData, delayMs = 0): Promise<void> {
    await this.maintenance.add(job.type, job, {
      attempts: 6,
      backoff: { type: "exponential", delay: 5000 },
      ...(delayMs > 0 ? { delay: delayMs } : {}),
      removeOnComplete: true,
      removeOnFail: { count: 100 },
    });
  }

  /** Removes a project's queue and all its jobs (project deletion). */
  async obliterate(org: string, project: string): Promise<void> {
    const queue = this.projectQueue(org, project);
    await queue.obliterate({ force: true });
    this.queues.delete(this.keys.projectTag(org, project));
    await queue.close().catch(() => undefined);
  }

  /** Closes every queue object (not the shared connection). */
  async close(): Promise<void> {
    await Promise.all([...this.queues.values(), this.dispatch, this.maintenance].map((q) => q.close()));
  }
}
