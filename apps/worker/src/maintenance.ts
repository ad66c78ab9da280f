/**
 * Housekeeping any worker may do: removing the files of deleted sessions and projects (the
 * gateway never touches the workspace), and deleting a deleted session's Redis data once more in
 * case the gateway's own deletion failed half-way (purge.ts). Paths come only from WorkspacePaths,
 * which validates ids.
 */
import { rm } from "node:fs/promises";
import { MAINTENANCE_QUEUE, type MaintenanceJobData, queueOptions } from "@pi-fleet/queue";
import { Worker } from "bullmq";
import type { WorkerContext } from "./worker-context.ts";

/** Starts the maintenance consumer; returns it so the caller can close it. */
export function startMaintenance(ctx: WorkerContext): Worker<MaintenanceJobData> {
  const worker = new Worker<MaintenanceJobData>(
    MAINTENANCE_QUEUE,
    async (job) => {
      const d = job.data;
      if (d.type === "purge-session") {
        // Queued before the deletion: until the record is gone there is nothing to purge (BullMQ
        // tries twice more; a deletion that never happened leaves the session as it is).
        if (await ctx.registry.getSession(d.org, d.project, d.session)) {
          throw new Error("the session is still registered");
        }
        await ctx.events.deleteSessionData({ org: d.org, project: d.project, session: d.session });
        await rm(ctx.paths.sessionFile(d.org, d.project, d.session), { force: true });
      } else if (d.type === "purge-project") {
        await rm(ctx.paths.projectDir(d.org, d.project), { recursive: true, force: true });
        await rm(ctx.paths.sessionsDir(d.org, d.project), { recursive: true, force: true });
      }
    },
    { connection: ctx.bullmq, ...queueOptions(ctx.keys.queuePrefix), concurrency: 2 },
  );
  worker.on("error", (err) => ctx.logger.warn({ err: err.message }, "maintenance worker error"));
  return worker;
}
