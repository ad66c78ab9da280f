/**
 * Runs: prompt (enqueue, with `Idempotency-Key`; with `streamingBehavior`, delivered into the
 * running run instead), session state and one run's record. The prompt's answer carries the
 * offset just before `run_queued` (or before the delivery), so a client subscribing from it
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
import { deliverInput } from "../deliver.ts";
import { enqueuePrompt } from "../enqueue.ts";
import { requireSession } from "../lookups.ts";
import { effectiveSettings } from "../model-settings.ts";
import { inputBodyLimit, validateUserInput } from "../prompt-input.ts";

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
      bodyLimit: inputBodyLimit(s.env),
      schema: {
        tags: ["sessions"],
        summary:
          "Queue a prompt (with `streamingBehavior` on a running session: deliver it into the run). Events flow over the session stream; the answer names the run.",
        params: SessionParams,
        body: PromptRequest,
        response: {
          200: PromptResponse,
          400: ErrorResponse,
          404: ErrorResponse,
          413: ErrorResponse,
          503: ErrorResponse,
        },
      },
    },
    async (request) => {
      const { projectId, id } = request.params as { projectId: string; id: string };
      const body = request.body as {
        text: string;
        images?: { data: string; mimeType: string }[];
        streamingBehavior?: "steer" | "followUp";
      };
      const input = validateUserInput(s.env, body, "prompt");
      const rawKey = request.headers["idempotency-key"];
      if (rawKey !== undefined && (typeof rawKey !== "string" || !IDEMPOTENCY_KEY.test(rawKey))) {
        throw new ApiError(
          "PF_ERR_REQUEST_INVALID",
          "Idempotency-Key must be 1–200 printable ASCII characters",
        );
      }
      const org = request.auth.org;
      if (!body.streamingBehavior) {
        // The common path, one script: the enqueue checks that the session exists (and the caps).
        // Only a refusal looks the ids up, so that a missing project answers as such.
        try {
          const run = await enqueuePrompt(s, org, projectId, id, input, rawKey);
          return { ok: true as const, ...run };
        } catch (err) {
          if (err instanceof ApiError && err.code === "PF_ERR_SESSION_NOT_FOUND") {
            await requireSession(s, org, projectId, id);
          }
          throw err;
        }
      }
      // Busy: into the running run (as pi's prompt with streamingBehavior); idle: queued.
      const session = await requireSession(s, org, projectId, id);
      const outcome = await deliverInput(
        s,
        org,
        projectId,
        id,
        session.activeRun,
        input,
        body.streamingBehavior,
        rawKey,
      );
      return { ok: true as const, ...outcome };
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
      const session = await requireSession(s, request.auth.org, projectId, id);
      const ref = { org: request.auth.org, project: projectId, session: id };
      const [open, bounds, models] = await Promise.all([
        s.events.openRuns(ref),
        s.events.bounds(ref),
        s.registry.listModels(request.auth.org),
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
      await requireSession(s, request.auth.org, projectId, id);
      const run = await s.events.getRun(request.auth.org, projectId, runId);
      if (!run || run.sessionId !== id) throw new ApiError("PF_ERR_RUN_NOT_FOUND");
      return runView(run);
    },
  );
}
