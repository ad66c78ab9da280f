/** Shared 404 checks: a project or session that does not exist (or is not this org's) is a 404. */
import { ApiError } from "@pi-fleet/contracts";
import type { ProjectRecord, SessionRecord } from "@pi-fleet/registry";
import type { GatewayServices } from "./services.ts";

/** Returns the project or throws 404 `PF_ERR_PROJECT_NOT_FOUND`. */
export async function requireProject(
  s: GatewayServices,
  org: string,
  projectId: string,
): Promise<ProjectRecord> {
  const project = await s.registry.getProject(org, projectId);
  if (!project) throw new ApiError("PF_ERR_PROJECT_NOT_FOUND");
  return project;
}

/** Returns the session or throws 404 (`PF_ERR_PROJECT_NOT_FOUND` / `PF_ERR_SESSION_NOT_FOUND`). */
export async function requireSession(
  s: GatewayServices,
  org: string,
  projectId: string,
  id: string,
): Promise<SessionRecord> {
  const [project, session] = await Promise.all([
    s.registry.getProject(org, projectId),
    s.registry.getSession(org, projectId, id),
  ]);
  if (!project) throw new ApiError("PF_ERR_PROJECT_NOT_FOUND");
  if (!session) throw new ApiError("PF_ERR_SESSION_NOT_FOUND");
  return session;
}
