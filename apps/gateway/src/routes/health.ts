/** Liveness (`/v1/healthz`: the process answers; never checks Redis) and readiness (`/v1/readyz`). */
import { HealthResponse, ReadyResponse } from "@pi-fleet/contracts";
import type { FastifyInstance } from "fastify";

export async function healthRoutes(app: FastifyInstance): Promise<void> {
  app.get(
    "/v1/healthz",
    {
      config: { auth: "public" },
      schema: {
        tags: ["meta"],
        summary: "Liveness + diagnostic counters.",
        response: { 200: HealthResponse },
      },
    },
    async () => ({
      ok: true as const,
      service: "agent-server" as const,
      time: new Date().toISOString(),
      channels: { sse: app.services.state.sseClients },
    }),
  );
  app.get(
    "/v1/readyz",
    {
      config: { auth: "public" },
      schema: {
        tags: ["meta"],
        summary: "Readiness: Redis reachable within 1 s and not draining.",
        response: { 200: ReadyResponse, 503: ReadyResponse },
      },
    },
    async (_request, reply) => {
      const { redis, state } = app.services;
      const redisOk = await Promise.race([
        redis.ping().then(
          (r) => r === "PONG",
          () => false,
        ),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1000).unref()),
      ]);
      const ok = redisOk && !state.draining;
      return reply.status(ok ? 200 : 503).send({ ok, redis: redisOk, draining: state.draining });
    },
  );
}
