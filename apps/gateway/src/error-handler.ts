/**
 * One error shape for every failure (API.md "Errors"): `{error, code, details?}`. Validation
 * errors name the offending path; body-parser errors map to 400/413/415; anything unexpected is a
 * 500 with a generic message (details only in the log, never a stack trace to the client).
 */
import { ApiError, ERROR_CODES, type ErrorCode } from "@pi-fleet/contracts";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

function body(code: ErrorCode, message?: string, details?: unknown) {
  return { error: message ?? ERROR_CODES[code].message, code, ...(details === undefined ? {} : { details }) };
}

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: "PF_ERR_REQUEST_TOO_LARGE",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "PF_ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE",
  FST_ERR_CTP_EMPTY_JSON_BODY: "PF_ERR_REQUEST_MALFORMED_JSON",
  FST_ERR_CTP_INVALID_JSON_BODY: "PF_ERR_REQUEST_MALFORMED_JSON",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "PF_ERR_REQUEST_INVALID",
  FST_ERR_CTP_INVALID_TYPE: "PF_ERR_REQUEST_INVALID",
  FST_ERR_VALIDATION: "PF_ERR_REQUEST_INVALID",
};

/**
 * Fastify's `frameworkErrors` option: errors the router raises before any route or hook runs (a
 * malformed URL, a path parameter longer than `maxParamLength`) get the same error shape as
 * everything else: 400 `PF_ERR_REQUEST_INVALID`.
 */
export function frameworkErrorHandler(
  err: FastifyError,
  _request: FastifyRequest,
  reply: FastifyReply,
): void {
  const message =
    err.code === "FST_ERR_MAX_PARAM_LENGTH" ? "a path parameter is too long" : "the request URL is malformed";
  void reply.status(400).send(body("PF_ERR_REQUEST_INVALID", message));
}

/** Installs the error and not-found handlers. */
export function installErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler<FastifyError>((err, request, reply) => {
    if (err instanceof ApiError) {
      // Every 429 says when to come back (the rate limiter sets its own exact value).
      if (err.status === 429 && reply.getHeader("retry-after") === undefined)
        reply.header("Retry-After", "5");
      return reply.status(err.status).send(body(err.code, err.message, err.details));
    }
    if (err.validation) {
      const details = err.validation.map((v) => ({
        path: `${err.validationContext ?? ""}${v.instancePath || ""}`,
        message: v.message ?? "invalid",
        ...(v.params && "additionalProperty" in v.params ? { field: v.params.additionalProperty } : {}),
      }));
      return reply.status(400).send(body("PF_ERR_REQUEST_INVALID", err.message, details));
    }
    const mapped = err.code ? FASTIFY_CODES[err.code] : undefined;
    if (mapped) return reply.status(ERROR_CODES[mapped].status).send(body(mapped, err.message));
    if (err instanceof SyntaxError) return reply.status(400).send(body("PF_ERR_REQUEST_MALFORMED_JSON"));
    if (typeof err.statusCode === "number" && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.status(err.statusCode).send(body("PF_ERR_REQUEST_INVALID", err.message));
    }
    if (isRedisUnavailable(err)) {
      request.log.warn({ err: err.message }, "redis unavailable");
      return reply.status(503).header("Retry-After", "1").send(body("PF_ERR_SERVICE_UNAVAILABLE"));
    }
    request.log.error({ err }, "unhandled error");
    return reply.status(500).send(body("PF_ERR_INTERNAL"));
  });
  app.setNotFoundHandler((request, reply) => {
    reply
      .status(404)
      .send(body("PF_ERR_ROUTE_NOT_FOUND", `no route ${request.method} ${request.url.split("?")[0]}`));
  });
}

/** True for the errors ioredis gives while Redis cannot be reached (answered as 503). */
export function isRedisUnavailable(err: Error): boolean {
  return (
    err.name === "MaxRetriesPerRequestError" ||
    /ECONNREFUSED|Connection is closed|max retries per request|Stream isn't writeable|ETIMEDOUT/i.test(
      err.message,
    )
  );
}
