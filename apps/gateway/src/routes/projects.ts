/**
 * Projects: create-or-get by name, list, get, delete. The gateway never touches the workspace:
 * directories are created by the worker that first runs the project and removed by a worker
 * through the maintenance queue.
 */
import {
  ApiError,
  CreateProjectRequest,
  ErrorResponse,
  ListProjectsResponse,
  OkResponse,
  ProjectIdParams,
  ProjectInfo,
  slugify,
} from "@pi-fleet/contracts";
import { ProjectBeingDeletedError, type ProjectRecord } from "@pi-fleet/registry";
import type { FastifyInstance } from "fastify";
import { purgeProject } from "../purge.ts";
import type { GatewayServices } from "../services.ts";

function info(s: GatewayServices, org: string, p: ProjectRecord) {
  return { ...p, projectDir: s.paths.projectDir(org, p.id) };
}

export async function projectRoutes(app: FastifyInstance): Promise<void> {
  const s = app.services;
  app.post(
    "/v1/projects",
    {
      schema: {
        tags: ["projects"],
        summary: "Create a project, or return the existing one (idempotent on name).",
        body: CreateProjectRequest,
        response: { 200: ProjectInfo, 400: ErrorResponse, 409: ErrorResponse },
      },
    },
    async (request) => {
      const { name, deployment } = request.body as { name: string; deployment?: unknown };
      const id = slugify(name);
      if (!id) throw new ApiError("PF_ERR_PROJECT_NAME_INVALID");
      const { project } = await s.registry
        .upsertProject(request.auth.org, id, name, deployment)
        .catch((err: unknown) => {
          // Its files are still being removed: the new project must not inherit them.
          if (err instanceof ProjectBeingDeletedError) throw new ApiError("PF_ERR_PROJECT_BEING_DELETED");
          throw err;
        });
      return info(s, request.auth.org, project);
    },
  );
  app.get(
    "/v1/projects",
    {
      schema: {
        tags: ["projects"],
        summary: "List projects, newest first.",
        response: { 200: ListProjectsResponse },
      },
    },
    async (request) => ({
      projects: (await s.registry.listProjects(request.auth.org)).map((p) => info(s, request.auth.org, p)),
    }),
  );
  app.get(
    "/v1/projects/:id",
    {
      schema: {
        tags: ["projects"],
        summary: "Get a project.",
        params: ProjectIdParams,
        response: { 200: ProjectInfo, 404: ErrorResponse },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const project = await s.registry.getProject(request.auth.org, id);
      if (!project) throw new ApiError("PF_ERR_PROJECT_NOT_FOUND");
      return info(s, request.auth.org, project);
    },
  );
  app.delete(
    "/v1/projects/:id",
    {
      config: { auth: "admin" },
      schema: {
        tags: ["projects"],
        summary: "Delete a project: its sessions, streams, queue, working dir and transcripts.",
        params: ProjectIdParams,
        response: { 200: OkResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const project = await s.registry.getProject(request.auth.org, id);
      if (!project) throw new ApiError("PF_ERR_PROJECT_NOT_FOUND");
      await purgeProject(s, request.auth.org, id);
      return { ok: true as const };
    },
  );
}
