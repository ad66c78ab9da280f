/**
 * Housekeeping any worker may do after a deletion (apps/gateway/src/purge.ts): removing the files
 * of deleted sessions and projects (the gateway never touches the workspace), and deleting their
 * Redis data and queue once more in case the gateway's own deletion failed half-way. Paths come
 * only from WorkspacePaths, which validates ids.
 */
import { rm } from "node:fs/promises";
import {
  MAINTENANCE_QUEUE,
  type MaintenanceJobData,
  projectQueueOptions,
  queueOptions,
  type RunJobData,
} from "@pi-fleet/queue";
import { Queue, Worker } from "bullmq";
import type { WorkerContext } from "./worker-context.ts";

/** Starts the maintenance consumer; returns it so the caller can close it. */
export function startMaintenance(ctx: WorkerContext): Worker<MaintenanceJobData> {
  const worker = new Worker<MaintenanceJobData>(
    MAINTENANCE_QUEUE,
    async (job) => {
      const d = job.data;
      if (d.type === "purge-session") {
        // Queued before the deletion: until the record is gone there is nothing to purge (BullMQ
        // tries again over ~2.5 min; a deletion that never happened leaves the session as it is).
        if (await ctx.registry.getSession(d.org, d.project, d.session)) {
          throw new Error("the session is still registered");
        }
        await ctx.events.deleteSessionData({ org: d.org, project: d.project, session: d.session });
        await rm(ctx.paths.sessionFile(d.org, d.project, d.session), { force: true });
      } else if (d.type === "purge-project") {
        await purgeProject(ctx, d);
      }
    },
    { connection: ctx.bullmq, ...queueOptions(ctx.keys.queuePrefix), concurrency: 2 },
  );
  worker.on("error", (err) => ctx.logger.warn({ err: err.message }, "maintenance worker error"));
  return worker;
}

/**
 * A deleted project's leftovers: its sessions' Redis data and transcripts (by id: session ids are
 * never reused), and — unless a project of the same id was created since (possible only for jobs
 * of older gateways: the deleting marker blocks it) — its queue and directories; then it lifts
 * the marker. With a `deletionId`, the sessions come from the deletion's record, and until the
 * deletion's script ran (no record, the project still registered) the job fails and is retried.
 */
async function purgeProject(
  ctx: WorkerContext,
  d: Extract<MaintenanceJobData, { type: "purge-project" }>,
): Promise<void> {
  let sessions = d.sessions ?? [];
  const record =
    d.deletionId === undefined ? undefined : ctx.keys.projectDeletion(d.org, d.project, d.deletionId);
  if (record !== undefined) {
    const ids = await ctx.redis.get(record);
    if (ids === null) {
      if (await ctx.registry.getProject(d.org, d.project))
        throw new Error("the project is not deleted (yet)");
      return; // no record and no project: nothing of this deletion to purge
    }
    sessions = ids === "" ? [] : ids.split(",");
  }
  for (const session of sessions) {
    await ctx.events.deleteSessionData({ org: d.org, project: d.project, session });
    await rm(ctx.paths.sessionFile(d.org, d.project, session), { force: true });
  }
  if (!(await ctx.registry.getProject(d.org, d.project))) await purgeProjectFiles(ctx, d);
  if (record !== undefined) {
    // The files are gone: a project of this id may be created again (Registry.upsertProject).
    await ctx.redis.del(record, ctx.keys.projectDeleting(d.org, d.project));
  }
}

/** The queue and directories of a deleted project (not created again). */
async function purgeProjectFiles(
  ctx: WorkerContext,
  d: Extract<MaintenanceJobData, { type: "purge-project" }>,
): Promise<void> {
  const queue = new Queue<RunJobData>(ctx.keys.projectTag(d.org, d.project), {
    connection: ctx.bullmq,
    ...projectQueueOptions(ctx.keys.queuePrefix),
    skipMetasUpdate: true,
  });
  try {
    await queue.obliterate({ force: true });
  } finally {
    await queue.close().catch(() => undefined);
  }
  await rm(ctx.paths.projectDir(d.org, d.project), { recursive: true, force: true });
  await rm(ctx.paths.sessionsDir(d.org, d.project), { recursive: true, force: true });
}
