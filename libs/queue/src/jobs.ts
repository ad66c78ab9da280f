/**
 * Queue names, job payloads and job options. One BullMQ queue per project (named by its hash
 * tag) carries runs; the shared `dispatch` queue carries "own" jobs that wake a worker to take a
 * project's lease (deduplicated per project, so it holds at most one waiting or active job).
 * Prompts are never retried automatically (queues-and-streams.md §3.4: a retried prompt could
 * repeat tool side effects and would run after newer prompts).
 */
import type { JobsOptions, QueueOptions } from "bullmq";

/** Payload of a run job (job id = run id). */
export interface RunJobData {
  org: string;
  project: string;
  sessionId: string;
  runId: string;
  seq: number;
  text: string;
  /**
   * Images of the prompt (base64 `data`, `mimeType` image/png|jpeg|gif|webp), validated by the
   * gateway: at most PI_FLEET_MAX_IMAGES of PI_FLEET_MAX_IMAGE_BYTES decoded bytes each.
   */
  images?: { data: string; mimeType: string }[];
  /** Enqueue time on the shared monotonic clock (`process.hrtime.bigint()` as string), for latency figures. */
  enqueuedAtNs?: string;
  /** Enqueue time on the gateway's wall clock (`Date.now()`), for the dispatch latency metric across machines. */
  enqueuedAtMs?: number;
}

/** Payload of a dispatch ("own") job. */
export interface OwnJobData {
  org: string;
  project: string;
}

/**
 * Options for run jobs: no retries, bounded retention. A job carrying images (`heavy`: its data
 * can be tens of MB) is removed as soon as it is done instead of being kept among the last 200,
 * so finished image prompts do not pile up in Redis.
 */
export function runJobOptions(runId: string, heavy = false): JobsOptions {
  return {
    jobId: runId,
    attempts: 1,
    removeOnComplete: heavy ? true : { count: 200 },
    removeOnFail: heavy ? true : { count: 200 },
  };
}

/** Whether a run job carries images (see {@link runJobOptions}). */
export function isHeavyRunJob(data: RunJobData): boolean {
  return (data.images?.length ?? 0) > 0;
}

/** Options for "own" jobs: one per project at a time (deduplication by `<org>.<project>`). */
export function ownJobOptions(org: string, project: string): JobsOptions {
  return {
    deduplication: { id: `${org}.${project}` },
    attempts: 1,
    removeOnComplete: true,
    removeOnFail: true,
  };
}

/** Queue options shared by every pi-fleet queue (bounded events stream). */
export function queueOptions(prefix: string): Omit<QueueOptions, "connection"> {
  return { prefix, streams: { events: { maxLen: 100 } } };
}

/**
 * Options for the per-project run queues (producer side: add, counts, lookups), which are created
 * on the dispatch path (a prompt for a project this gateway has not queued to yet; an owner taking
 * a project). BullMQ otherwise sends `INFO` and parses it for every Queue object to check the Redis
 * version — a round trip on the cold path each time. The process's long-lived queues (dispatch,
 * maintenance: {@link queueOptions}) check the same server once at startup.
 *
 * Never for a consumer (Worker): without the check BullMQ assumes Redis 5.0 (bullmq 6.7,
 * `RedisConnection.getRedisVersionAndType`) and rounds its blocking waits up to whole seconds, so
 * a run deferred by 100 ms (its session's turn, its org's quota) was fetched up to 1 s late.
 * Consumers use {@link queueOptions}. For a Queue the assumed version only picks Lua fallbacks of
 * two state lookups, with the same results.
 */
export function projectQueueOptions(prefix: string): Omit<QueueOptions, "connection"> {
  return { ...queueOptions(prefix), skipVersionCheck: true };
}

/** Name of the queue any worker consumes for housekeeping (file removal after deletions). */
export const MAINTENANCE_QUEUE = "maintenance";

/**
 * Housekeeping jobs after a deletion: a session's transcript and Redis data, or a project's files,
 * Redis data and queue — repeating what the gateway's own deletion may have left half-done.
 * `deletionId` names the project deletion whose record (`Keys.projectDeletion`) lists the
 * project's sessions; `sessions` lists them directly (jobs of older gateways; neither: files only).
 */
export type MaintenanceJobData =
  | { type: "purge-session"; org: string; project: string; session: string }
  | { type: "purge-project"; org: string; project: string; deletionId?: string; sessions?: string[] };
