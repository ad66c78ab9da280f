/**
 * Per-org request rate limit (`PI_FLEET_ORG_RATE_LIMIT` requests per minute), counted in Redis by
 * `@fastify/rate-limit`'s Redis store so every gateway shares one budget per org. Runs after the
 * auth hook (both are `onRequest`; the app-level auth hook runs first), keyed by the request's org;
 * public routes (health, docs) are not limited. Beyond the budget: 429 `PF_ERR_RATE_LIMITED` with
 * `Retry-After` (seconds). Socket frames that stand for a request without going through a route
 * (a `/v1/ws` subscribe) spend the same budget through {@link socketRequestBudget}; socket
 * `request` frames and RPC commands run the routes themselves, so they are counted as REST.
 */
import rateLimit from "@fastify/rate-limit";
import { ApiError } from "@pi-fleet/contracts";
import type { FastifyInstance, FastifyRequest } from "fastify";

const PUBLIC = "public";

/** Registers the limiter (no-op when the limit is 0). */
export async function registerRateLimit(app: FastifyInstance): Promise<void> {
  const s = app.services;
  const max = s.env.PI_FLEET_ORG_RATE_LIMIT;
  if (max === 0) return;
  await app.register(rateLimit, {
    global: true,
    max,
    timeWindow: 60_000,
    redis: s.redis,
    nameSpace: s.keys.rateLimitPrefix,
    // Requests without an org (public routes, the operator API) are not counted.
    keyGenerator: (request) => (request.auth?.org ? `org:${request.auth.org}` : PUBLIC),
    // Fail open while Redis is unreachable: the request itself then fails fast (503) instead of
    // first waiting for a counter update that cannot happen.
    allowList: (_request, key) => key === PUBLIC || s.redis.status !== "ready",
    skipOnError: true,
    addHeadersOnExceeding: {
      "x-ratelimit-limit": true,
      "x-ratelimit-remaining": true,
      "x-ratelimit-reset": true,
    },
    errorResponseBuilder: (_request, context) =>
      new ApiError(
        "PF_ERR_RATE_LIMITED",
        `the org made more than ${context.max} requests per minute; retry in ${context.after}`,
      ),
  });
}

/**
 * Spends one request of the org of a socket's upgrade request from the budget REST requests spend
 * (PI_FLEET_ORG_RATE_LIMIT per minute, same Redis counter, same fail-open while Redis is down).
 * Resolves undefined when allowed, else the error REST answers (`PF_ERR_RATE_LIMITED`, 429) with
 * the seconds until the window resets in its message. Never rejects for a Redis failure.
 */
export type RequestBudget = (upgrade: FastifyRequest) => Promise<ApiError | undefined>;

/** The socket side of the org rate limit for `app` (call once; a no-op when the limit is 0). */
export function socketRequestBudget(app: FastifyInstance): RequestBudget {
  if (app.services.env.PI_FLEET_ORG_RATE_LIMIT === 0 || !app.hasDecorator("createRateLimit")) {
    return async () => undefined;
  }
  const limiter = app.createRateLimit();
  return async (upgrade) => {
    const verdict = await limiter(upgrade);
    if (verdict.isAllowed || !verdict.isExceeded) return undefined;
    return new ApiError(
      "PF_ERR_RATE_LIMITED",
      `the org made more than ${verdict.max} requests per minute; retry in ${verdict.ttlInSeconds} seconds`,
      { retryAfterMs: verdict.ttlInSeconds * 1000 },
    );
  };
}
