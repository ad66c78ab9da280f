/**
 * Maps a WebSocket `request` to the REST route that implements it, so both surfaces share
 * validation and semantics. `params` carries the ids plus the route's body fields.
 */

import type { RouteCall } from "../inject-route.ts";

/** The REST call for `method` with `params` (ids already validated by the frame schema). */
export function requestRoute(method: string, params: Record<string, unknown>): RouteCall {
  const { projectId, sessionId, requestId, idempotencyKey, ...body } = params as {
    projectId: string;
    sessionId: string;
    requestId?: string;
    idempotencyKey?: string;
    [key: string]: unknown;
  };
  const base = `/v1/projects/${projectId}/sessions/${sessionId}`;
  const headers: Record<string, string> = idempotencyKey ? { "idempotency-key": idempotencyKey } : {};
  switch (method) {
    case "prompt":
      return { method: "POST", url: `${base}/prompt`, headers, payload: body };
    case "steer":
      return { method: "POST", url: `${base}/steer`, headers, payload: body };
    case "follow_up":
      return { method: "POST", url: `${base}/follow_up`, headers, payload: body };
    case "abort":
      return { method: "POST", url: `${base}/abort`, headers, payload: body };
    case "commands":
      return { method: "POST", url: `${base}/commands`, headers, payload: body };
    case "extension_ui_response":
      return {
        method: "POST",
        url: `${base}/extension-ui/${encodeURIComponent(requestId ?? "")}/response`,
        headers,
        payload: body,
      };
    case "state":
      return { method: "GET", url: `${base}/state`, headers };
    default:
      return { method: "GET", url: base, headers };
  }
}
