/** Errors thrown by the client's stream and socket helpers (the REST client returns `{error}` instead). */

/** Base class of every error this package throws. */
export class PiFleetError extends Error {
  override name = "PiFleetError";
}

/** The body of a gateway error answer: `{error, code: "PF_ERR_…", details?}`. */
export interface ApiErrorBody {
  error: string;
  code: string;
  details?: unknown;
}

/**
 * The gateway answered with an error status: an SSE stream that cannot be opened for good (400
 * bad cursor, 401/403, 404 unknown project or session — retryable statuses such as 429 and 5xx
 * are retried instead), or a WebSocket request answered `ok: false`. `status` is the HTTP status,
 * `code` the gateway's `PF_ERR_…` code (when the body had one), `body` the parsed answer.
 */
export class PiFleetApiError extends PiFleetError {
  override name = "PiFleetApiError";
  readonly status: number;
  readonly code: string | undefined;
  readonly body: unknown;

  constructor(status: number, body: unknown) {
    const b = isApiErrorBody(body) ? body : undefined;
    super(b ? `${status} ${b.code}: ${b.error}` : `HTTP ${status}`);
    this.status = status;
    this.code = b?.code;
    this.body = body;
  }
}

/**
 * A WebSocket-level failure. `code` is the gateway's code for a rejected frame (e.g.
 * `PF_ERR_SESSION_NOT_FOUND` or `PF_ERR_STREAM_CURSOR_INVALID` for a subscription,
 * `PF_ERR_REQUEST_INVALID`), or one of the client's own:
 * - `PF_CLIENT_DISCONNECTED`: the connection dropped while a request that is not safe to repeat
 *   (`steer`, `follow_up`, `abort`, `commands`, `extension_ui_response`) was awaiting its answer —
 *   it may or may not have been executed;
 * - `PF_CLIENT_CLOSED`: the socket was closed with `close()`;
 * - `PF_CLIENT_DUPLICATE_SUBSCRIPTION`: that stream is already subscribed on this socket;
 * - `PF_CLIENT_FRAME_TOO_LARGE`: the gateway closed the connection because a frame was larger
 *   than it accepts (close 1009); the requests awaiting an answer then are failed, not re-sent;
 * - `PF_CLIENT_REJECTED`: the gateway refused the socket for good — it closed the connection with
 *   1008 (the credential was revoked), or refused the handshake with HTTP 401 or 403 (`status`)
 *   and its `PF_ERR_…` error body (a 401/403 without it, e.g. a proxy's, is retried); every
 *   subscription, request and `ready()` fails and the socket stops.
 */
export class PiFleetSocketError extends PiFleetError {
  override name = "PiFleetSocketError";
  readonly code: string;
  /** The HTTP status of a refused handshake (`PF_CLIENT_REJECTED`: 401 or 403), else undefined. */
  readonly status: number | undefined;

  constructor(code: string, message: string, status?: number) {
    super(`${code}: ${message}`);
    this.code = code;
    this.status = status;
  }
}

/** True when `body` looks like a gateway error answer. */
export function isApiErrorBody(body: unknown): body is ApiErrorBody {
  return (
    typeof body === "object" &&
    body !== null &&
    typeof (body as { error?: unknown }).error === "string" &&
    typeof (body as { code?: unknown }).code === "string"
  );
}
