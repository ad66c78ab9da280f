/**
 * The worker's own probe endpoints on `PI_FLEET_WORKER_PORT` (queues-and-streams.md §5):
 * `/healthz` = the process and its event loop answer (never checks Redis); `/readyz` = Redis
 * answers within 1 s and the worker is not draining (503 from the moment SIGTERM arrives);
 * `/metrics` = Prometheus text exposition (metrics.ts), when given.
 */
import { createServer, type Server } from "node:http";
import type { Redis } from "@pi-fleet/redis";

/** Starts the probe server; resolves with it once listening. */
export async function startHealthServer(
  port: number,
  host: string,
  redis: Redis,
  state: { draining: boolean },
  stats: () => Record<string, number>,
  metrics?: () => Promise<{ contentType: string; body: string }>,
): Promise<Server> {
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (req.method !== "GET")
      return send(405, { error: "method not allowed", code: "PF_ERR_REQUEST_INVALID" });
    if (req.url === "/healthz") return send(200, { ok: true, ...stats() });
    if (req.url === "/metrics" && metrics) {
      metrics().then(
        ({ contentType, body }) => {
          res.writeHead(200, { "content-type": contentType, "cache-control": "no-store" });
          res.end(body);
        },
        () => send(500, { error: "metrics collection failed", code: "PF_ERR_INTERNAL" }),
      );
      return;
    }
    if (req.url === "/readyz") {
      const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1000).unref());
      const ping = redis.ping().then(
        (r) => r === "PONG",
        () => false,
      );
      void Promise.race([ping, timeout]).then((redisOk) => {
        const ok = redisOk && !state.draining;
        send(ok ? 200 : 503, { ok, redis: redisOk, draining: state.draining });
      });
      return;
    }
    send(404, { error: "no such route", code: "PF_ERR_ROUTE_NOT_FOUND" });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
