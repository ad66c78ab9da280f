/**
 * The published contract: OpenAPI 3.1 generated from the route schemas by @fastify/swagger,
 * served at `GET /openapi.json` (and browsable at `/docs`). The committed copy lives in
 * `openapi/openapi.json`; `npm run openapi` regenerates it and CI fails when it drifts.
 */
import swagger, { type SwaggerTransform } from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { wireSchemaComponents } from "@pi-fleet/contracts";
import type { FastifyInstance } from "fastify";

/** Document metadata. */
export const OPENAPI_INFO = {
  title: "pi-fleet",
  version: "0.1.0",
  description:
    "Queue-backed, horizontally scalable cluster running the pi coding agent. A compatible superset of the seed agent-server contract.",
};

/**
 * The SSE routes and the wire-event schema of their `data:` lines. Documentation only: the routes
 * hijack the reply, so Fastify never serializes with it.
 */
const EVENT_STREAMS: Readonly<Record<string, { schema: string; description: string }>> = {
  "/v1/projects/:projectId/sessions/:id/events": {
    schema: "WireEvent",
    description:
      "`text/event-stream`: each `data:` line is one JSON `WireEvent`, its `id:` the stream offset.",
  },
  "/v1/projects/:projectId/events": {
    schema: "ActivityEvent",
    description:
      "`text/event-stream`: each `data:` line is one JSON `ActivityEvent`, its `id:` the stream offset.",
  },
};

/** Documents the 200 `text/event-stream` response of the SSE routes. */
const documentEventStreams: SwaggerTransform = ({ schema, url }) => {
  const stream = EVENT_STREAMS[url];
  if (!stream) return { schema, url };
  const response = (schema.response ?? {}) as Record<string, unknown>;
  return {
    url,
    schema: {
      ...schema,
      response: {
        200: {
          description: stream.description,
          content: { "text/event-stream": { schema: { $ref: `#/components/schemas/${stream.schema}` } } },
        },
        ...response,
      },
    },
  };
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
      components: { schemas: wireSchemaComponents() },
    },
    hideUntagged: false,
    transform: documentEventStreams,
  });
  await app.register(swaggerUi, { routePrefix: "/docs", staticCSP: true });
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
}
