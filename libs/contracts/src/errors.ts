/**
 * Error codes of the public API (API.md "Errors"): every error body is
 * `{error: "<human message>", code: "PF_ERR_<AREA>_<WHAT>", details?}` with the status below.
 */

/** code → HTTP status and default message. */
export const ERROR_CODES = {
  PF_ERR_REQUEST_INVALID: { status: 400, message: "request is invalid" },
  PF_ERR_REQUEST_MALFORMED_JSON: { status: 400, message: "request body is not valid JSON" },
  PF_ERR_REQUEST_TOO_LARGE: { status: 413, message: "request body is too large" },
  PF_ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE: { status: 415, message: "unsupported content type" },
  PF_ERR_AUTH_REQUIRED: { status: 401, message: "an API key is required (Authorization: Bearer <key>)" },
  PF_ERR_AUTH_INVALID: { status: 401, message: "the API key is invalid, revoked or expired" },
  PF_ERR_AUTH_FORBIDDEN: { status: 403, message: "the API key's role does not allow this" },
  PF_ERR_ORG_NOT_FOUND: { status: 404, message: "unknown org" },
  PF_ERR_ORG_EXISTS: { status: 409, message: "an org with this id exists" },
  PF_ERR_KEY_NOT_FOUND: { status: 404, message: "unknown API key" },
  PF_ERR_AUTH_KEYED_MODE_REQUIRED: {
    status: 409,
    message:
      "API keys are only issued in keyed mode: this gateway runs in open mode (PI_FLEET_ADMIN_TOKEN unset), which checks no key. Set PI_FLEET_ADMIN_TOKEN, then create keys with the operator API (POST /v1/admin/orgs/{org}/keys) or, with an org admin key, POST /v1/keys",
  },
  PF_ERR_RATE_LIMITED: { status: 429, message: "too many requests" },
  PF_ERR_QUEUE_FULL: { status: 429, message: "too many queued runs" },
  PF_ERR_ROUTE_NOT_FOUND: { status: 404, message: "no such route" },
  PF_ERR_ROUTE_METHOD_NOT_ALLOWED: {
    status: 405,
    message: "the path exists but not with this method (see the Allow header)",
  },
  PF_ERR_PROJECT_NOT_FOUND: { status: 404, message: "unknown project" },
  PF_ERR_PROJECT_NAME_INVALID: { status: 400, message: "name does not yield a valid project id" },
  PF_ERR_PROJECT_BEING_DELETED: {
    status: 409,
    message: "a project of this id is being deleted: create it again in a few seconds",
  },
  PF_ERR_SESSION_NOT_FOUND: { status: 404, message: "unknown session" },
  PF_ERR_SESSION_BUSY: { status: 409, message: "session is running" },
  PF_ERR_RUN_NOT_FOUND: { status: 404, message: "unknown run" },
  PF_ERR_COMMAND_BUSY: { status: 409, message: "the command is not allowed while a run is active" },
  PF_ERR_COMMAND_UNSUPPORTED: { status: 400, message: "unknown or unsupported command" },
  PF_ERR_UI_REQUEST_NOT_FOUND: { status: 404, message: "no pending extension UI request with this id" },
  PF_ERR_UI_ALREADY_ANSWERED: {
    status: 409,
    message: "the extension UI request was already answered (or timed out)",
  },
  PF_ERR_MODEL_NOT_FOUND: { status: 404, message: "unknown model" },
  PF_ERR_PROVIDER_RESERVED: { status: 400, message: "provider id is reserved for a built-in provider" },
  PF_ERR_PROVIDER_NOT_FOUND: { status: 400, message: "unknown provider" },
  PF_ERR_PROVIDER_KEY_INVALID: { status: 400, message: "invalid API key" },
  PF_ERR_SECRET_KEY_REQUIRED: {
    status: 503,
    message: "this deployment cannot store secrets: PI_FLEET_SECRET_KEY is not configured",
  },
  PF_ERR_AUTH_SUBSCRIPTION_UNSUPPORTED: {
    status: 400,
    message: "subscription login is not supported by this deployment",
  },
  PF_ERR_AUTH_FLOW_NOT_FOUND: { status: 404, message: "unknown subscription login flow" },
  PF_ERR_STREAM_CURSOR_INVALID: { status: 400, message: "invalid stream offset" },
  PF_ERR_SERVICE_UNAVAILABLE: { status: 503, message: "service unavailable" },
  PF_ERR_CONTROL_TIMEOUT: { status: 503, message: "the worker owning this project did not answer in time" },
  PF_ERR_INTERNAL: { status: 500, message: "internal error" },
} as const;

/** Every error code. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** An error that maps to an API response. */
export class ApiError extends Error {
  override readonly name = "ApiError";
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: unknown;

  constructor(code: ErrorCode, message?: string, details?: unknown) {
    super(message ?? ERROR_CODES[code].message);
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.details = details;
  }
}
