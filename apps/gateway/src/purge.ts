/**
 * Deletion of projects and sessions. The maintenance job that finishes the deletion is queued
 * first (a worker removes the files: the gateway never touches the workspace volume; the job also
 * repeats the Redis deletions, in case a step below fails); then the records go in one script
 * (new requests 404 at once, followers get `stream_ended`), the owner (if any) is told to stop and
 * forget the session / project, and the Redis data goes.
 */
import { randomUUID } from "node:crypto";
import { MissingRecordError } from "@pi-fleet/streams";
import type { GatewayServices } from "./services.ts";

/**
 * How long after a session deletion began its maintenance job runs (ms): by then the steps below
 * have normally finished, and the job repeats whatever of them failed.
 */
export const SESSION_PURGE_DELAY_MS = 5000;

/**
 * Deletes a session: its registry record together with its `session_deleted` activity event, then
 * stream, history and open runs. A maintenance job queued first (delayed by
 * {@link SESSION_PURGE_DELAY_MS}) removes the transcript file and deletes the session's Redis data
 * again, so a step that fails here (the client sees an error, and a retry finds no session) leaves
 * nothing behind; the job does nothing while the session is still registered. Every step after the
 * record's is idempotent, so a concurrent delete of the same session is harmless (one event).
 */
export async function purgeSession(
  s: GatewayServices,
  org: string,
  projectId: string,
  sessionId: string,
): Promise<void> {
  await s.producer.requestMaintenance(
    { type: "purge-session", org, project: projectId, session: sessionId },
    SESSION_PURGE_DELAY_MS,
  );
  await s.sessions.delete(org, projectId, sessionId);
  await s.control.send(org, projectId, "forget_session", { session: sessionId }, 2000).catch(() => undefined);
  await s.events.deleteSessionData({ org, project: projectId, session: sessionId });
}

/**
 * Deletes an org: every project (as purgeProject), its providers and secrets, then its org record,
 * API keys and audit log. Its keys stop working at once: the org is disabled first.
 */
export async function purgeOrg(s: GatewayServices, org: string): Promise<void> {
  await s.tenancy.orgs.patch(org, { disabled: true });
  for (const project of await s.registry.listProjects(org)) await purgeProject(s, org, project.id);
  await s.registry.deleteOrgRecords(org);
  await s.redis.del(s.keys.rateLimitCounter(org), s.keys.orgRunning(org), s.keys.orgQueued(org));
  await s.tenancy.orgs.delete(org);
}

/**
 * How long after a project deletion began its maintenance job runs (ms): normally after the owner
 * was told to release the project (its sessions closed), yet soon, as no project of the same id
 * can be created until the job removed the files (409 PF_ERR_PROJECT_BEING_DELETED meanwhile).
 */
export const PROJECT_PURGE_DELAY_MS = 1000;

/**
 * Deletes a project with all its sessions, its queue and its files. A maintenance job is queued
 * first (delayed by {@link PROJECT_PURGE_DELAY_MS}); then one script deletes the project's records
 * and activity stream, records the session ids under this deletion's id and ends the followers of
 * its streams (SessionRecords.deleteProject: a retry then finds no project); then the sessions'
 * data and the queue go. The job purges the recorded sessions again and removes the files, so a
 * deletion that fails half-way leaves nothing behind; it does nothing until the script ran.
 */
export async function purgeProject(s: GatewayServices, org: string, projectId: string): Promise<void> {
  const deletionId = randomUUID();
  await s.producer.requestMaintenance(
    { type: "purge-project", org, project: projectId, deletionId },
    PROJECT_PURGE_DELAY_MS,
  );
  let sessions: string[];
  try {
    sessions = await s.sessions.deleteProject(org, projectId, deletionId);
  } catch (err) {
    // A concurrent deletion won: it is gone, and that deletion (and its job) finishes the rest.
    if (err instanceof MissingRecordError) return;
    throw err;
  }
  await s.control.send(org, projectId, "release_project", {}, 5000).catch(() => undefined);
  for (const session of sessions) {
    await s.events.deleteSessionData({ org, project: projectId, session });
  }
  await s.producer.obliterate(org, projectId);
}
