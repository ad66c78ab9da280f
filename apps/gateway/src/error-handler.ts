/**
 * One error shape for every failure (API.md "Errors"): `{error, code, details?}`. Validation
 * errors name the offending path (and the allowed values of an enum or constant); body-parser
 * errors map to 400/413/415; storing a secret without PI_FLEET_SECRET_KEY in keyed mode is a 503
 * PF_ERR_SECRET_KEY_REQUIRED; anything unexpected is a 500 with a generic message (details only in
 * the log, never a stack trace to the client). A path no route has is a 404 PF_ERR_ROUTE_NOT_FOUND;
 * a real path asked with a method it does not have is a 405 PF_ERR_ROUTE_METHOD_NOT_ALLOWED with `Allow`
 * (route-methods.ts).
 */
import { ApiError, ERROR_CODES, type ErrorCode } from "@pi-fleet/contracts";
import { SecretBoxError } from "@pi-fleet/security";
import type {
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  FastifySchemaValidationError,
} from "fastify";
import { trackRouteMethods } from "./route-methods.ts";

/**
 * The answer to a secret (provider API key) that may not be stored: keyed mode without a key
 * (`SecretBoxError` "key_required", from the registry's sealer). Any route that stores one.
 */
export const SECRET_KEY_REQUIRED_MESSAGE =
  "this deployment cannot store provider API keys: the operator must set PI_FLEET_SECRET_KEY " +
  "(or PI_FLEET_SECRET_KEY_FILE) on the gateway; keyed mode never stores them unencrypted";

/** One ajv error as Fastify hands it over (`err.validation`). */
interface AjvIssue {
  keyword?: string;
  instancePath?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/**
 * ajv's message, with the allowed values of an `enum` or `const` appended: its own text ("must be
 * equal to one of the allowed values") names none.
 */
export function validationMessage(issue: AjvIssue): string {
  const message = issue.message ?? "invalid";
  const params = issue.params ?? {};
  if (issue.keyword === "enum" && Array.isArray(params.allowedValues)) {
    return `${message}: ${params.allowedValues.map((v) => JSON.stringify(v)).join(", ")}`;
  }
  if (issue.keyword === "const" && "allowedValue" in params) {
    return `${message} ${JSON.stringify(params.allowedValue)}`;
  }
  return message;
}

/**
 * The error Fastify raises when a request part fails its route schema (`FST_ERR_VALIDATION`, its
 * default message `<context><path> <message>, …`), for a part a route validates itself after the
 * route schema (`POST …/commands`: the command's own schema). The error handler answers it like
 * Fastify's own: 400 `PF_ERR_REQUEST_INVALID` with `details` naming each path.
 */
export function validationError(
  issues: FastifySchemaValidationError[],
  context: NonNullable<FastifyError["validationContext"]>,
): FastifyError {
  const message = issues.map((v) => `${context}${v.instancePath || ""} ${v.message ?? "invalid"}`).join(", ");
  const err = new Error(message || `${context} is invalid`) as FastifyError;
  err.code = "FST_ERR_VALIDATION";
  err.statusCode = 400;
  err.validation = issues;
  err.validationContext = context;
  return err;
}

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

/**
 * Installs the error and not-found handlers. Call it before any route is registered: it mirrors
 * the routes' methods for the 405 answer.
 */
export function installErrorHandlers(app: FastifyInstance): void {
  const allowedMethods = trackRouteMethods(app);
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
        message: validationMessage(v),
        ...(v.params && "additionalProperty" in v.params ? { field: v.params.additionalProperty } : {}),
        ...(v.keyword === "enum" && Array.isArray(v.params?.allowedValues)
          ? { allowedValues: v.params.allowedValues }
          : {}),
      }));
      // Fastify's message is "<path> <ajv message>" per error: rebuilt the same way when a detail
      // gained its allowed values.
      const enriched = details.some((d, i) => d.message !== (err.validation?.[i]?.message ?? "invalid"));
      const message = enriched ? details.map((d) => `${d.path} ${d.message}`).join(", ") : err.message;
      return reply.status(400).send(body("PF_ERR_REQUEST_INVALID", message, details));
    }
    if (err instanceof SecretBoxError && err.code === "key_required") {
      request.log.warn(
        { url: request.routeOptions.url },
        "refused to store a provider API key: PI_FLEET_SECRET_KEY is unset (keyed mode)",
      );
      return reply.status(503).send(body("PF_ERR_SECRET_KEY_REQUIRED", SECRET_KEY_REQUIRED_MESSAGE));
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
  // Like any unknown path, a wrong method runs no route hooks: no auth, no rate limit (the answer
  // depends on route shapes only, which the OpenAPI document publishes).
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split("?")[0];
    // OPTIONS keeps its 404 (CORS preflights have their own route when CORS is configured); the
    // request's own method among the path's means a route itself answered not found.
    const allowed = request.method === "OPTIONS" ? [] : allowedMethods(request.url);
    if (allowed.length > 0 && !allowed.includes(request.method)) {
      return reply
        .status(405)
        .header("Allow", allowed.join(", "))
        .send(
          body("PF_ERR_ROUTE_METHOD_NOT_ALLOWED", `${request.method} is not allowed on ${path}`, {
            allow: allowed,
          }),
        );
    }
    return reply.status(404).send(body("PF_ERR_ROUTE_NOT_FOUND", `no route ${request.method} ${path}`));
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
