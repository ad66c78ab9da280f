/**
 * pi's RPC protocol (`pi --mode rpc`, 0.87.1) as the fleet speaks it: the command set, pi's
 * response records (`{id?, type: "response", command, success, data | error}`, fields that are
 * undefined vanish as in pi's JSON), its parse-error and unknown-command texts, and how each
 * command maps onto the REST route that implements it in the fleet. Responses of those routes
 * are turned back into pi's records here, so rpc-connection.ts only sequences and streams.
 */
import {
  BASH_ID_MAX_LENGTH,
  commandSchema,
  FLEET_EVENTS,
  isUiRequestId,
  withoutNullOptionals,
} from "@pi-fleet/contracts";
import { jsonBody } from "../inject-route.ts";
import { TOO_DEEP_MESSAGE, tooDeep } from "../json-depth.ts";

/** A record sent to an RPC client (a response, or an event forwarded as pi writes it). */
export type RpcRecord = Record<string, unknown>;

/** One parsed client record: a command (`type` + fields, optional `id`). */
export type RpcCommand = { id?: unknown; type?: unknown; [key: string]: unknown };

/** The command types of pi 0.87.1's RPC mode (`RpcCommand` in dist/modes/rpc/rpc-types.d.ts). */
export const PI_RPC_COMMANDS: ReadonlySet<string> = new Set([
  "prompt",
  "steer",
  "follow_up",
  "abort",
  "clear_queue",
  "new_session",
  "get_state",
  "set_model",
  "cycle_model",
  "get_available_models",
  "set_thinking_level",
  "cycle_thinking_level",
  "get_available_thinking_levels",
  "set_steering_mode",
  "set_follow_up_mode",
  "compact",
  "set_auto_compaction",
  "set_auto_retry",
  "abort_retry",
  "bash",
  "abort_bash",
  "get_session_stats",
  "export_html",
  "switch_session",
  "fork",
  "clone",
  "get_fork_messages",
  "get_entries",
  "get_tree",
  "get_last_assistant_text",
  "set_session_name",
  "get_messages",
  "get_commands",
]);

/**
 * Commands that end with the connection driving another session when they succeed with a new
 * `sessionId` (pi's RPC process rebinds to the session it created or switched to).
 */
export const SESSION_CHANGING_COMMANDS: ReadonlySet<string> = new Set([
  "new_session",
  "fork",
  "clone",
  "switch_session",
]);

/** Event types of the fleet's own (run lifecycle, stream control): never forwarded as pi events. */
export const FLEET_EVENT_TYPES: ReadonlySet<string> = new Set(
  Object.values(FLEET_EVENTS).map((schema) => schema.properties.type.const as string),
);

/**
 * pi events that only a command emits (AgentSession 0.87.1: `setSessionName`, `setThinkingLevel`),
 * published by the worker between runs: forwarded, never taken for a run in progress.
 */
export const COMMAND_EVENT_TYPES: ReadonlySet<string> = new Set([
  "session_info_changed",
  "thinking_level_changed",
]);

/** pi's error when a prompt arrives while the agent streams (AgentSession.prompt, 0.87.1). */
export const ALREADY_PROCESSING =
  "Agent is already processing. Specify streamingBehavior ('steer' or 'followUp') to queue the message.";

/** pi's success response; `data` only when given (rpc-mode.js `success`). */
export function rpcSuccess(id: unknown, command: unknown, data?: unknown): RpcRecord {
  return data === undefined
    ? { id, type: "response", command, success: true }
    : { id, type: "response", command, success: true, data };
}

/** pi's failure response (rpc-mode.js `error`). */
export function rpcError(id: unknown, command: unknown, message: string): RpcRecord {
  return { id, type: "response", command, success: false, error: message };
}

/** pi's answer to a line that is not JSON: no id, command `parse`. */
export function parseErrorResponse(err: unknown): RpcRecord {
  const message = err instanceof Error ? err.message : String(err);
  return rpcError(undefined, "parse", `Failed to parse command: ${message}`);
}

/**
 * One client frame as pi reads one line of its input: a JSONL writer's line ending is tolerated
 * (pi strips `\r`); a record that is not an object is a command without fields (pi reads `type`
 * and `id` of whatever it parsed). A frame that is not JSON, or nested deeper than the gateway
 * accepts, yields pi's parse-error response instead.
 */
export function parseRecord(frame: string): { record: RpcCommand } | { response: RpcRecord } {
  let line = frame.endsWith("\n") ? frame.slice(0, -1) : frame;
  if (line.endsWith("\r")) line = line.slice(0, -1);
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
    if (tooDeep(parsed)) throw new Error(TOO_DEEP_MESSAGE);
  } catch (err) {
    return { response: parseErrorResponse(err) };
  }
  return { record: isRecord(parsed) ? parsed : {} };
}

/** pi's answer to a command type it does not know (any `type`, even a missing one). */
export function unknownCommandResponse(command: RpcCommand): RpcRecord {
  return rpcError(command.id, command.type, `Unknown command: ${String(command.type)}`);
}

/** An internal request to one REST route (executed with `app.inject`). */
export interface RouteCall {
  method: "GET" | "POST";
  /** Path below `/v1/projects/{projectId}/sessions/{id}` (starting with `/`, or empty). */
  path: string;
  /** JSON body: an object, or already serialised (a Buffer from `jsonBody`). */
  body?: unknown;
}

/** pi's user input fields (prompt / steer / follow_up) as the fleet's route body. */
function inputBody(command: RpcCommand, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    text: command.message,
    ...(command.images === undefined ? {} : { images: command.images }),
    ...extra,
  };
}

/** `POST …/prompt` for pi's `prompt {message, images?, streamingBehavior?}` (body serialised). */
export function promptCall(command: RpcCommand): RouteCall {
  const streaming = command.streamingBehavior;
  return {
    method: "POST",
    path: "/prompt",
    body: jsonBody(inputBody(command, streaming === undefined ? {} : { streamingBehavior: streaming })),
  };
}

/** `POST …/steer` / `…/follow_up` for pi's `steer` / `follow_up {message, images?}` (body serialised). */
export function deliverCall(command: RpcCommand, route: "steer" | "follow_up"): RouteCall {
  return { method: "POST", path: `/${route}`, body: jsonBody(inputBody(command)) };
}

/**
 * A user input command (`prompt`, `steer`, `follow_up`) split, as soon as it arrives, into its
 * route call — text and images (up to ~54 MiB) serialised once — and what the connection keeps
 * while the command waits its turn: `id`, `type` and `streamingBehavior`. Any other command is
 * returned as it is, without a call.
 */
export function splitInput(command: RpcCommand): { command: RpcCommand; call?: RouteCall } {
  const { id, type, streamingBehavior } = command;
  if (type === "prompt") return { command: { id, type, streamingBehavior }, call: promptCall(command) };
  if (type === "steer" || type === "follow_up")
    return { command: { id, type }, call: deliverCall(command, type) };
  return { command };
}

/**
 * `POST …/abort` for pi's `abort`. Queued runs are cancelled too: pi's abort leaves nothing
 * pending, and a prompt the fleet has queued but not started is, for pi, already streaming.
 */
export function abortCall(): RouteCall {
  return { method: "POST", path: "/abort", body: { cancelQueued: true } };
}

/**
 * `POST …/commands` for every other command (the worker's command switch). pi reads the fields its
 * command defines and ignores any other, where the route answers an unknown field with a 400: the
 * body keeps only the command's own fields (libs/contracts `commandSchema`). An optional one that
 * is null is dropped by the route's own rule (`withoutNullOptionals`, also applied here so the
 * body is what the route validates). A string `id` is forwarded (a `bash` tags its
 * `bash_execution_update` events with it, as pi does; a bash id over BASH_ID_MAX_LENGTH, which the
 * route refuses, is not forwarded: pi refuses no id, so its events go untagged instead); the
 * response's id stays here in any case, whatever its type. A wrongly typed
 * field goes through, and the route's 400 text becomes pi's error response.
 */
export function commandCall(command: RpcCommand): RouteCall {
  const { id, ...rest } = command;
  const schema = typeof command.type === "string" ? commandSchema(command.type) : undefined;
  // Every pi command sent here has a schema (a unit test holds PI_RPC_COMMANDS to them).
  if (!schema) return { method: "POST", path: "/commands", body: rest };
  const own: Record<string, unknown> = {};
  for (const key of Object.keys(schema.properties)) {
    if (key !== "id" && rest[key] !== undefined) own[key] = rest[key];
  }
  // pi takes any id; a bash's longer than the route allows is kept here (for the response) only.
  if (typeof id === "string" && (command.type !== "bash" || id.length <= BASH_ID_MAX_LENGTH)) own.id = id;
  return { method: "POST", path: "/commands", body: withoutNullOptionals(schema, own) };
}

/** `GET …/state` (status, running run, queue length): whether pi would count the agent as streaming. */
export function stateCall(): RouteCall {
  return { method: "GET", path: "/state" };
}

/**
 * pi's `extension_ui_response {id, value | confirmed | cancelled}` as the body of `POST
 * …/extension-ui/{id}/response`, read the way pi's dialogs read it (`cancelled` wins); undefined
 * when the record cannot answer anything (pi ignores those).
 */
export function extensionUiAnswer(record: RpcCommand): { requestId: string; body: unknown } | undefined {
  // The id becomes part of a route URL: only well-formed ids (a "." or ".." would be resolved away).
  if (typeof record.id !== "string" || !isUiRequestId(record.id)) return undefined;
  let body: unknown;
  if (record.cancelled === true) body = { cancelled: true };
  else if (typeof record.value === "string") body = { value: record.value };
  else if (typeof record.confirmed === "boolean") body = { confirmed: record.confirmed };
  else body = { cancelled: true };
  return { requestId: record.id, body };
}

/** The human message of a REST error body (`{error, code}`), or a fallback with the status. */
export function routeErrorText(status: number, body: unknown): string {
  const error = (body as { error?: unknown } | null)?.error;
  return typeof error === "string" && error !== "" ? error : `request failed with status ${status}`;
}

/**
 * A `POST …/commands` answer (`{type, success, data?, error?}`) as pi's response. Where pi's JSON
 * omits a field the fleet's contract spells `null` (`get_last_assistant_text` before any answer:
 * pi's `text` is undefined), the field is dropped again.
 */
export function commandResponse(id: unknown, type: string, answer: unknown): RpcRecord {
  const a = (answer ?? {}) as { success?: unknown; data?: unknown; error?: unknown };
  if (a.success !== true) {
    return rpcError(id, type, typeof a.error === "string" ? a.error : `${type} failed`);
  }
  let data = a.data;
  if (type === "get_last_assistant_text" && isRecord(data) && data.text === null) {
    const { text: _none, ...rest } = data;
    data = rest;
  }
  return rpcSuccess(id, type, data);
}

/** Whether `value` is a plain object (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
