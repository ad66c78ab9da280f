/**
 * Runs: prompt (enqueue, with `Idempotency-Key`), session state and one run's record. The
 * prompt's answer carries the offset just before `run_queued`, so a client subscribing from it
 * misses nothing.
 */
import {
  ApiError,
  ErrorResponse,
  PromptRequest,
  PromptResponse,
  RunParams,
  RunResponse,
  SessionParams,
  SessionStateResponse,
} from "@pi-fleet/contracts";
import type { RunRecord } from "@pi-fleet/streams";
import type { FastifyInstance } from "fastify";
import { enqueuePrompt } from "../enqueue.ts";
import { requireSession } from "../lookups.ts";
import { effectiveSettings } from "../model-settings.ts";

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;

function runView(r: RunRecord) {
  const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
  return {
    id: r.id,
    sessionId: r.sessionId,
    status: r.status,
    seq: r.seq,
    createdAt: new Date(r.createdAt).toISOString(),
    startedAt: iso(r.startedAt),
    endedAt: iso(r.endedAt),
    queuedOffset: r.queuedOffset,
    startOffset: r.startOffset,
    endOffset: r.endOffset,
    usage: r.usage,
    error: r.error,
    reason: r.reason,
  };
}

export async function runRoutes(app: FastifyInstance): Promise<void> {
  const s = app.services;
  app.post(
    "/v1/projects/:projectId/sessions/:id/prompt",
    {
      schema: {
        tags: ["sessions"],
        summary: "Queue a prompt. Events flow over the session stream; the answer names the run.",
        params: SessionParams,
        body: PromptRequest,
        response: { 200: PromptResponse, 400: ErrorResponse, 404: ErrorResponse, 413: ErrorResponse },
      },
    },
    async (request) => {
      const { projectId, id } = request.params as { projectId: string; id: string };
      const { text } = request.body as { text: string };
      if (text.length > s.env.PI_FLEET_MAX_PROMPT_CHARS) {
        throw new ApiError(
          "PF_ERR_REQUEST_TOO_LARGE",
          `prompt exceeds ${s.env.PI_FLEET_MAX_PROMPT_CHARS} characters`,
        );
      }
      const rawKey = request.headers["idempotency-key"];
      if (rawKey !== undefined && (typeof rawKey !== "string" || !IDEMPOTENCY_KEY.test(rawKey))) {
        throw new ApiError(
          "PF_ERR_REQUEST_INVALID",
          "Idempotency-Key must be 1–200 printable ASCII characters",
        );
      }
      await requireSession(s, projectId, id);
      const run = await enqueuePrompt(s, projectId, id, text, rawKey);
      return { ok: true as const, ...run };
    },
  );

  app.get(
    "/v1/projects/:projectId/sessions/:id/state",
    {
      schema: {
        tags: ["sessions"],
        summary: "Session status (idle / queued / running), current run, queue length, model, last offset.",
        params: SessionParams,
        response: { 200: SessionStateResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const { projectId, id } = request.params as { projectId: string; id: string };
      const session = await requireSession(s, projectId, id);
      const ref = { org: s.org, project: projectId, session: id };
      const [open, bounds, models] = await Promise.all([
        s.events.openRuns(ref),
        s.events.bounds(ref),
        s.registry.listModels(s.org),
      ]);
      const running = session.activeRun;
      const queueLength = open.filter((r) => r !== running).length;
      const settings = effectiveSettings(session, models);
      return {
        status: running ? ("running" as const) : queueLength > 0 ? ("queued" as const) : ("idle" as const),
        ...(running ? { runId: running } : {}),
        queueLength,
        model: settings.model,
        thinkingLevel: settings.thinkingLevel,
        lastOffset: bounds.last ?? "0",
      };
    },
  );

  app.get(
    "/v1/projects/:projectId/sessions/:id/runs/:runId",
    {
      schema: {
        tags: ["sessions"],
        summary: "One run: status, timestamps, offsets, usage, error.",
        params: RunParams,
        response: { 200: RunResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const { projectId, id, runId } = request.params as { projectId: string; id: string; runId: string };
      await requireSession(s, projectId, id);
      const run = await s.events.getRun(s.org, projectId, runId);
      if (!run || run.sessionId !== id) throw new ApiError("PF_ERR_RUN_NOT_FOUND");
      return runView(run);
    },
  );
}
