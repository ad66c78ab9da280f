/**
 * Browser-facing HTTP policy: security headers (`@fastify/helmet`; the API answers JSON and event
 * streams, so no CSP here — the `/docs` page sets its own) and CORS for the origins in
 * `PI_FLEET_CORS_ORIGINS` (`@fastify/cors`; none configured = no CORS headers, so browsers on
 * other origins are refused by the browser itself). Credentials are bearer tokens, never cookies.
 */
import cors from "@fastify/cors";
import helmet from "@fastify/helmet";
import { splitList } from "@pi-fleet/config";
import type { FastifyInstance } from "fastify";

/** Registers helmet and, when origins are configured, CORS. */
export async function registerHttpPolicy(app: FastifyInstance): Promise<void> {
  await app.register(helmet, { global: true, contentSecurityPolicy: false });
  const origins = splitList(app.services.env.PI_FLEET_CORS_ORIGINS);
  if (origins.length > 0) {
    await app.register(cors, {
      origin: origins,
      methods: ["GET", "POST", "PUT", "PATCH", "DELETE"],
      allowedHeaders: ["authorization", "content-type", "idempotency-key", "last-event-id"],
      exposedHeaders: ["retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"],
      credentials: false,
      maxAge: 600,
    });
  }
}
