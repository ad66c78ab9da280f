/**
 * Maps a WebSocket `request` to the REST route that implements it, so both surfaces share
 * validation and semantics. `params` carries the ids plus the route's body fields.
 */

import { jsonBody, type RouteCall } from "../inject-route.ts";

/**
 * The REST call for `method` with `params` (ids already validated by the frame schema). A POST's
 * body is serialised here (a Buffer), so the caller can let go of the frame while the route runs.
 */
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
  const post = (path: string): RouteCall => ({
    method: "POST",
    url: `${base}${path}`,
    headers,
    payload: jsonBody(body),
  });
  switch (method) {
    case "prompt":
      return post("/prompt");
    case "steer":
      return post("/steer");
    case "follow_up":
      return post("/follow_up");
    case "abort":
      return post("/abort");
    case "commands":
      return post("/commands");
    case "extension_ui_response":
      return post(`/extension-ui/${encodeURIComponent(requestId ?? "")}/response`);
    case "state":
      return { method: "GET", url: `${base}/state`, headers };
    default:
      return { method: "GET", url: base, headers };
  }
}
