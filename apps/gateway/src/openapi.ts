/**
 * The published contract: OpenAPI 3.1 generated from the route schemas by @fastify/swagger,
 * served at `GET /openapi.json` (and browsable at `/docs`). The committed copy lives in
 * `openapi/openapi.json`; `npm run openapi` regenerates it and CI fails when it drifts.
 */
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyInstance } from "fastify";

/** Document metadata. */
export const OPENAPI_INFO = {
  title: "pi-fleet",
  version: "0.1.0",
  description:
    "Queue-backed, horizontally scalable cluster running the pi coding agent. A compatible superset of the seed agent-server contract.",
};

/** Registers the generator (before any route) and the `/openapi.json` and `/docs` routes. */
export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: OPENAPI_INFO,
      tags: [
        { name: "meta", description: "Health and readiness" },
        { name: "projects", description: "Projects of the org" },
        { name: "sessions", description: "Sessions, runs and their event streams" },
        { name: "models", description: "Models, providers and session model settings" },
      ],
    },
    hideUntagged: false,
  });
  await app.register(swaggerUi, { routePrefix: "/docs", staticCSP: true });
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
}
