/**
 * Sessions: list, create (optionally with a model and thinking level), history, delete, and
 * model settings. History comes from the Redis mirror of persisted messages, so any gateway can
 * serve it without touching the workspace.
 */
import { randomUUID } from "node:crypto";
import {
  ApiError,
  CreateSessionRequest,
  CreateSessionResponse,
  ErrorResponse,
  ListSessionsResponse,
  OkResponse,
  PatchSessionSettingsRequest,
  ProjectParams,
  SessionMessagesResponse,
  SessionModelSettingsResponse,
  SessionParams,
  type ThinkingLevel,
} from "@pi-fleet/contracts";
import { MissingRecordError } from "@pi-fleet/streams";
import type { FastifyInstance } from "fastify";
import { requireProject, requireSession } from "../lookups.ts";
import { clampLevel, effectiveSettings } from "../model-settings.ts";
import { purgeSession } from "../purge.ts";
import type { GatewayServices } from "../services.ts";

type ModelChoice = { provider?: string; modelId?: string; thinkingLevel?: ThinkingLevel };

/** Checks a model choice against the org's models; returns the clamped thinking level. */
async function checkModel(
  s: GatewayServices,
  org: string,
  choice: ModelChoice,
): Promise<ThinkingLevel | undefined> {
  if ((choice.provider === undefined) !== (choice.modelId === undefined)) {
    throw new ApiError("PF_ERR_REQUEST_INVALID", "provider and modelId must be given together");
  }
  if (choice.provider === undefined) return choice.thinkingLevel;
  const models = await s.registry.listModels(org);
  const model = models.find((m) => m.provider === choice.provider && m.id === choice.modelId);
  if (!model)
    throw new ApiError("PF_ERR_MODEL_NOT_FOUND", `unknown model ${choice.provider}/${choice.modelId}`);
  return choice.thinkingLevel === undefined ? undefined : clampLevel(model, choice.thinkingLevel);
}

export async function sessionRoutes(app: FastifyInstance): Promise<void> {
  const s = app.services;
  app.get(
    "/v1/projects/:projectId/sessions",
    {
      schema: {
        tags: ["sessions"],
        summary: "List sessions, newest first.",
        params: ProjectParams,
        response: { 200: ListSessionsResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const { projectId } = request.params as { projectId: string };
      await requireProject(s, request.auth.org, projectId);
      const rows = await s.registry.listSessions(request.auth.org, projectId);
      return {
        sessions: rows.map((r) => ({
          id: r.id,
          createdAt: r.createdAt,
          firstMessage: r.firstMessage,
          messageCount: r.messageCount,
          ...(r.name ? { name: r.name } : {}),
        })),
      };
    },
  );
  app.post(
    "/v1/projects/:projectId/sessions",
    {
      config: { optionalBody: true },
      schema: {
        tags: ["sessions"],
        summary: "Create a session, optionally with a name, model and thinking level.",
        params: ProjectParams,
        body: CreateSessionRequest,
        response: { 200: CreateSessionResponse, 400: ErrorResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const { projectId } = request.params as { projectId: string };
      const body = (request.body ?? {}) as ModelChoice & { name?: string };
      await requireProject(s, request.auth.org, projectId);
      const thinkingLevel = await checkModel(s, request.auth.org, body);
      const id = randomUUID();
      // The record and its `session_created` activity event are written together.
      const { createdAt } = await s.sessions
        .create(request.auth.org, projectId, id, { ...body, thinkingLevel })
        .catch((err: unknown) => {
          // The project was deleted since the lookup above.
          if (err instanceof MissingRecordError) throw new ApiError("PF_ERR_PROJECT_NOT_FOUND");
          throw err;
        });
      return { id, createdAt, ...(body.name ? { name: body.name } : {}) };
    },
  );
  app.get(
    "/v1/projects/:projectId/sessions/:id",
    {
      // pi's messages go out as stored: the documented schema must never drop fields or fail on
      // a message kind a newer pi adds.
      serializerCompiler: () => (data) => JSON.stringify(data),
      schema: {
        tags: ["sessions"],
        summary: "Persisted message history of a session.",
        params: SessionParams,
        response: { 200: SessionMessagesResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const { projectId, id } = request.params as { projectId: string; id: string };
      await requireSession(s, request.auth.org, projectId, id);
      return { id, messages: await s.registry.sessionMessages(request.auth.org, projectId, id) };
    },
  );
  app.delete(
    "/v1/projects/:projectId/sessions/:id",
    {
      schema: {
        tags: ["sessions"],
        summary: "Delete a session, its stream and its transcript.",
        params: SessionParams,
        response: { 200: OkResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const { projectId, id } = request.params as { projectId: string; id: string };
      await requireSession(s, request.auth.org, projectId, id);
      await purgeSession(s, request.auth.org, projectId, id);
      return { ok: true as const };
    },
  );
  app.get(
    "/v1/projects/:projectId/sessions/:id/settings",
    {
      schema: {
        tags: ["models"],
        summary: "The session's model and thinking settings.",
        params: SessionParams,
        response: { 200: SessionModelSettingsResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const { projectId, id } = request.params as { projectId: string; id: string };
      const session = await requireSession(s, request.auth.org, projectId, id);
      const models = await s.registry.listModels(request.auth.org);
      return { ...effectiveSettings(session, models), isStreaming: session.activeRun !== undefined };
    },
  );
  app.patch(
    "/v1/projects/:projectId/sessions/:id/settings",
    {
      schema: {
        tags: ["models"],
        summary: "Switch model and/or thinking level while the session is idle (409 while running).",
        params: SessionParams,
        body: PatchSessionSettingsRequest,
        response: {
          200: SessionModelSettingsResponse,
          400: ErrorResponse,
          404: ErrorResponse,
          409: ErrorResponse,
        },
      },
    },
    async (request) => {
      const { projectId, id } = request.params as { projectId: string; id: string };
      const body = request.body as ModelChoice;
      const session = await requireSession(s, request.auth.org, projectId, id);
      if (session.activeRun) throw new ApiError("PF_ERR_SESSION_BUSY");
      await checkModel(s, request.auth.org, body);
      const models = await s.registry.listModels(request.auth.org);
      const next = { ...session, ...body };
      const effective = effectiveSettings(next, models);
      const written = await s.registry.updateSessionSettings(request.auth.org, projectId, id, {
        provider: body.provider,
        modelId: body.modelId,
        thinkingLevel: body.thinkingLevel === undefined ? undefined : effective.thinkingLevel,
      });
      // Deleted since the lookup: nothing was written.
      if (!written) throw new ApiError("PF_ERR_SESSION_NOT_FOUND");
      return { ...effective, isStreaming: false };
    },
  );
}
