/**
 * Control of a session from any gateway: steer, follow-up, abort (optionally cancelling queued
 * runs), pi commands, and extension-UI answers. Each goes to the worker holding the project's
 * lease over the control channel and back; commands get an owner on demand. Steer and follow-up
 * on an idle session become a new prompt run, as in pi.
 */

import type { Env } from "@pi-fleet/config";
import {
  AbortRequest,
  AbortResponse,
  ApiError,
  CommandEnvelope,
  CommandRequest,
  CommandResponse,
  commandSchema,
  DeliverRequest,
  DeliverResponse,
  ErrorResponse,
  ExtensionUiParams,
  ExtensionUiResponseRequest,
  OkResponse,
  PendingExtensionUiRequestsResponse,
  SessionParams,
  withoutNullOptionals,
} from "@pi-fleet/contracts";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { requireRole } from "../auth/authenticate.ts";
import { type ControlOutcome, unansweredError } from "../control-client.ts";
import { deliverInput } from "../deliver.ts";
import { validationError } from "../error-handler.ts";
import { requireSession } from "../lookups.ts";
import { inputBodyLimit, validateUserInput } from "../prompt-input.ts";
import type { GatewayServices } from "../services.ts";

type DeliverBody = { text: string; images?: { data: string; mimeType: string }[] };

type Params = { projectId: string; id: string };

/**
 * The worker's `ui_response` error when another answer (or the dialog's timeout) came first
 * (`UI_ALREADY_ANSWERED` in apps/worker/src/ui-bridge.ts; the gateway does not import the worker).
 */
const UI_ALREADY_ANSWERED = "already answered";

/** The reply's result, or the matching API error. */
function resultOf(outcome: ControlOutcome): Record<string, unknown> | undefined {
  const unanswered = unansweredError(outcome);
  if (unanswered) throw unanswered;
  if (outcome.kind !== "reply") return undefined;
  if (!outcome.reply.ok) return undefined;
  return (outcome.reply.result ?? {}) as Record<string, unknown>;
}

/** How long a session command is waited for (ms), unless it is one of {@link LONG_COMMANDS}. */
const COMMAND_WAIT_MS = 30_000;

/** Commands that may run for minutes: a user shell command (up to its cap) and a compaction. */
const LONG_COMMANDS: ReadonlySet<string> = new Set(["bash", "compact"]);

/**
 * How long `POST …/commands` waits for the worker's answer (ms): PI_FLEET_COMMAND_TIMEOUT_MS for a
 * `bash` or `compact` (a bash at least its own cap PI_FLEET_BASH_TIMEOUT_MS + 30 s, so it is never
 * cut short by the wait), 30 s for the others. A worker lost meanwhile ends the wait within seconds
 * (ControlClient: `lost`).
 */
export function commandWaitMs(env: Env, type: string): number {
  if (!LONG_COMMANDS.has(type)) return COMMAND_WAIT_MS;
  const wait = env.PI_FLEET_COMMAND_TIMEOUT_MS;
  return type === "bash" ? Math.max(wait, env.PI_FLEET_BASH_TIMEOUT_MS + 30_000) : wait;
}

/** Commands that only read (`get_state`, `get_messages`, …): allowed to viewers. */
const READ_ONLY_COMMAND = /^get_[a-z_]+$/;

/**
 * The second step of a command body's validation (the route schema, {@link CommandEnvelope}, has
 * checked `type`): the command's optional fields that are null dropped (read as absent, the rule
 * the pi RPC socket applies too: libs/contracts `withoutNullOptionals`), then the command's own
 * schema (libs/contracts commands.ts: pi's fields, no others), compiled once per type by the
 * route's ajv with the app's options (unknown fields rejected, no coercion). A type without a
 * schema passes unchanged: the worker answers it (400 `PF_ERR_COMMAND_UNSUPPORTED`, pi's
 * `Unknown command: <type>`).
 * @returns the command as the worker gets it
 * @throws Fastify's validation error (400 `PF_ERR_REQUEST_INVALID`, `details` naming each path)
 */
function validateCommand(request: FastifyRequest, body: { type: string }): { type: string } {
  const schema = commandSchema(body.type);
  if (!schema) return body;
  const command = withoutNullOptionals(schema, body) as { type: string }; // `type` is required
  const validate = request.compileValidationSchema(schema, "body");
  if (validate(command) !== true) throw validationError(validate.errors ?? [], "body");
  return command;
}

/** Steer / follow-up: validated, then into the running run or queued as a prompt (deliver.ts). */
async function deliver(
  s: GatewayServices,
  org: string,
  p: Params,
  body: DeliverBody,
  mode: "steer" | "followUp",
) {
  const input = validateUserInput(s.env, body);
  const session = await requireSession(s, org, p.projectId, p.id);
  const outcome = await deliverInput(s, org, p.projectId, p.id, session.activeRun, input, mode);
  return { ok: true as const, ...outcome };
}

export async function controlRoutes(app: FastifyInstance): Promise<void> {
  const s = app.services;
  const deliverSchema = (summary: string) => ({
    tags: ["sessions"],
    summary,
    params: SessionParams,
    body: DeliverRequest,
    response: { 200: DeliverResponse, 400: ErrorResponse, 404: ErrorResponse, 413: ErrorResponse },
  });
  app.post(
    "/v1/projects/:projectId/sessions/:id/steer",
    {
      bodyLimit: inputBodyLimit(s.env),
      schema: deliverSchema(
        "Steer the running agent (delivered after its current tool calls); idle: a new prompt.",
      ),
    },
    async (request) =>
      deliver(s, request.auth.org, request.params as Params, request.body as DeliverBody, "steer"),
  );
  app.post(
    "/v1/projects/:projectId/sessions/:id/follow_up",
    {
      bodyLimit: inputBodyLimit(s.env),
      schema: deliverSchema("Queue a follow-up for when the agent would stop; idle: a new prompt."),
    },
    async (request) =>
      deliver(s, request.auth.org, request.params as Params, request.body as DeliverBody, "followUp"),
  );

  app.post(
    "/v1/projects/:projectId/sessions/:id/abort",
    {
      config: { optionalBody: true },
      schema: {
        tags: ["sessions"],
        summary: "Abort the running run (no-op if idle); `cancelQueued` also cancels queued runs.",
        params: SessionParams,
        body: AbortRequest,
        response: { 200: AbortResponse, 404: ErrorResponse, 503: ErrorResponse },
      },
    },
    async (request) => {
      const { projectId, id } = request.params as Params;
      const { cancelQueued } = (request.body ?? {}) as { cancelQueued?: boolean };
      const session = await requireSession(s, request.auth.org, projectId, id);
      const ref = { org: request.auth.org, project: projectId, session: id };
      let cancelled = 0;
      if (cancelQueued) {
        for (const runId of await s.events.openRuns(ref)) {
          const res = await s.events.transitionRun(ref, runId, "", ["queued"], "cancelled", {
            type: "run_cancelled",
            runId,
            sessionId: id,
          });
          if ("offset" in res) cancelled++;
        }
      }
      if (!session.activeRun) return { ok: true as const, aborted: false, cancelled };
      const result = resultOf(await s.control.send(request.auth.org, projectId, "abort", { session: id }));
      const runId = typeof result?.runId === "string" ? result.runId : undefined;
      return { ok: true as const, aborted: result?.aborted === true, cancelled, ...(runId ? { runId } : {}) };
    },
  );

  /**
   * `POST …/commands`: one pi RPC command (pi 0.87.1's `RpcCommand` shapes, libs/contracts
   * commands.ts) on the session's owner, which is taken on demand. The body is validated in two
   * steps: `type` (route schema), then that command's own fields (validateCommand; an optional
   * one that is null counts as absent): an unknown field or a wrongly typed argument (a null
   * required one too) is a 400 `PF_ERR_REQUEST_INVALID` naming the path, before roles and the
   * session are checked. `get_*` commands are open to viewers, the others need a member. Answers
   * `{type, success, data?, error?}`: 200 also when pi refuses the arguments' meaning (`success:
   * false`, pi's text, e.g. "Session name cannot be empty"); 400
   * `PF_ERR_COMMAND_UNSUPPORTED` for a type the fleet does not run as a command (`prompt`,
   * `switch_session`, an unknown one); 409 `PF_ERR_COMMAND_BUSY` for a change pi forbids during a
   * run. The OpenAPI document shows the body as the union of the command schemas.
   */
  app.post(
    "/v1/projects/:projectId/sessions/:id/commands",
    {
      config: {
        auth: "viewer",
        // Documented as what it accepts after both steps: the union of the command schemas.
        swaggerTransform: ({ schema, url }) => ({ url, schema: { ...schema, body: CommandRequest } }),
      },
      schema: {
        tags: ["sessions"],
        summary: "Run a pi RPC command on the session (get_state, get_messages, compact, …).",
        params: SessionParams,
        body: CommandEnvelope,
        response: { 200: CommandResponse, 400: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse },
      },
    },
    async (request) => {
      const { projectId, id } = request.params as Params;
      const command = validateCommand(request, request.body as { type: string });
      // Reading commands (get_*) are open to viewers; everything else changes the session.
      if (!READ_ONLY_COMMAND.test(command.type)) requireRole(request, "member");
      await requireSession(s, request.auth.org, projectId, id);
      const outcome = await s.control.send(
        request.auth.org,
        projectId,
        "command",
        { session: id, payload: command },
        commandWaitMs(s.env, command.type),
        true,
      );
      const unanswered = unansweredError(outcome);
      if (unanswered) throw unanswered;
      if (outcome.kind !== "reply")
        throw new ApiError("PF_ERR_SERVICE_UNAVAILABLE", "no worker could take the project");
      if (!outcome.reply.ok) throw new ApiError("PF_ERR_SERVICE_UNAVAILABLE", outcome.reply.error);
      const result = outcome.reply.result as {
        success: boolean;
        data?: unknown;
        error?: string;
        code?: string;
      };
      if (!result.success && result.code === "busy") throw new ApiError("PF_ERR_COMMAND_BUSY", result.error);
      if (!result.success && result.code === "unsupported") {
        throw new ApiError("PF_ERR_COMMAND_UNSUPPORTED", result.error);
      }
      return {
        type: command.type,
        success: result.success,
        ...(result.data === undefined ? {} : { data: result.data }),
        ...(result.error === undefined ? {} : { error: result.error }),
      };
    },
  );

  app.get(
    "/v1/projects/:projectId/sessions/:id/extension-ui",
    {
      serializerCompiler: () => (data) => JSON.stringify(data),
      schema: {
        tags: ["sessions"],
        summary: "Pending extension UI requests of the session.",
        params: SessionParams,
        response: { 200: PendingExtensionUiRequestsResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const { projectId, id } = request.params as Params;
      await requireSession(s, request.auth.org, projectId, id);
      return { requests: await s.registry.pendingUiRequests(request.auth.org, projectId, id) };
    },
  );

  app.post(
    "/v1/projects/:projectId/sessions/:id/extension-ui/:requestId/response",
    {
      schema: {
        tags: ["sessions"],
        summary: "Answer a pending extension UI request.",
        params: ExtensionUiParams,
        body: ExtensionUiResponseRequest,
        response: { 200: OkResponse, 400: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse },
      },
    },
    async (request) => {
      const { projectId, id, requestId } = request.params as Params & { requestId: string };
      await requireSession(s, request.auth.org, projectId, id);
      // The pending hash in Redis is the truth any gateway can read: pending, answered
      // (tombstone: 409 without asking the worker), or unknown.
      const status = await s.registry.pendingUiStatus(request.auth.org, projectId, id, requestId);
      if (status === "answered") throw new ApiError("PF_ERR_UI_ALREADY_ANSWERED");
      if (status === "unknown") throw new ApiError("PF_ERR_UI_REQUEST_NOT_FOUND");
      // The worker that asked holds the waiting dialog; its atomic take decides the first answer.
      const outcome = await s.control.send(request.auth.org, projectId, "ui_response", {
        session: id,
        payload: { requestId, response: request.body },
      });
      // Unanswered: whether the answer reached the dialog is unknown (it stays listed while pending).
      const unanswered = unansweredError(outcome);
      if (unanswered) throw unanswered;
      if (outcome.kind === "reply" && outcome.reply.ok) return { ok: true as const };
      if (outcome.kind === "reply" && outcome.reply.error === UI_ALREADY_ANSWERED) {
        throw new ApiError("PF_ERR_UI_ALREADY_ANSWERED");
      }
      // No owner (the worker that asked is gone with its dialogs) or a dialog it no longer holds.
      throw new ApiError("PF_ERR_UI_REQUEST_NOT_FOUND");
    },
  );
}
