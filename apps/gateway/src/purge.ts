/**
 * Deletion of projects and sessions. Registry entries go first (so new requests 404 at once),
 * then the owner (if any) is told to stop and forget the session/project, then Redis data, and
 * finally the files are removed by a worker through the maintenance queue (the gateway never
 * touches the workspace volume).
 */
import type { GatewayServices } from "./services.ts";

/** Deletes a session: registry, stream, history, open runs; transcript file via maintenance. */
export async function purgeSession(s: GatewayServices, projectId: string, sessionId: string): Promise<void> {
  await s.registry.deleteSession(s.org, projectId, sessionId);
  await s.control
    .send(s.org, projectId, "forget_session", { session: sessionId }, 2000)
    .catch(() => undefined);
  await s.events.deleteSessionData({ org: s.org, project: projectId, session: sessionId });
  await s.events.appendActivity(s.org, projectId, { type: "session_deleted", sessionId });
  await s.producer.requestMaintenance({
    type: "purge-session",
    org: s.org,
    project: projectId,
    session: sessionId,
  });
}

/** Deletes a project with all its sessions, its queue and its files. */
export async function purgeProject(s: GatewayServices, projectId: string): Promise<void> {
  const sessions = await s.registry.deleteProject(s.org, projectId);
  await s.control.send(s.org, projectId, "release_project", {}, 5000).catch(() => undefined);
  for (const session of sessions) {
    await s.events.deleteSessionData({ org: s.org, project: projectId, session });
  }
  await s.events.deleteActivity(s.org, projectId);
  await s.events.deleteActivity(s.org, projectId);
  await s.producer.obliterate(s.org, projectId);
  await s.producer.requestMaintenance({ type: "purge-project", org: s.org, project: projectId });
}
