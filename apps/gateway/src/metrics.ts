/**
 * The gateway's Prometheus metrics (docs/operations.md "Metrics"): HTTP latency by route pattern,
 * open SSE / WebSocket connections, stream frames and lagging disconnects, control round trips,
 * run terminal states recorded here (cancellations, failed enqueues), the dispatch wait list and
 * Redis connection errors.
 *
 * Served at `GET /metrics` on the API port (operator token in keyed mode, see
 * auth/operator-access.ts) and, when `PI_FLEET_METRICS_PORT` is set, without auth on a listener
 * of its own for in-cluster scrapers that should not hold the operator token.
 */
import { createServer, type Server } from "node:http";
import { type RunStatus, TERMINAL_RUN_STATUSES } from "@pi-fleet/contracts";
import {
  createMetricsRegistry,
  deltaCounter,
  FAST_BUCKETS,
  Gauge,
  Histogram,
  METRIC_PREFIX,
  type Registry,
  redisErrorCounter,
  type Scrape,
  scrape,
} from "@pi-fleet/observability";
import type { Keys, Redis } from "@pi-fleet/redis";
import type { FastifyInstance } from "fastify";
import { operatorOnly } from "./auth/operator-access.ts";

const P = METRIC_PREFIX;
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/** Stream transports (label `transport`). */
export type Transport = "sse" | "ws";

/** One gateway's metrics. Counters on hot paths are plain numbers folded in on scrape. */
export class GatewayMetrics {
  readonly registry: Registry;
  readonly httpDuration: Histogram<"method" | "route" | "status">;
  readonly controlRoundTrip: Histogram<"type" | "outcome">;
  /** Stream frames sent (events and resets; not heartbeats or WS control frames), by transport. */
  readonly frames: Record<Transport, number> = { sse: 0, ws: 0 };
  /** Clients cut with `stream_lagging`, by transport. */
  readonly lagging: Record<Transport, number> = { sse: 0, ws: 0 };
  /** Open `/v1/ws` sockets. */
  wsConnections = 0;
  /** Open pi RPC sockets (`…/sessions/{id}/rpc`). */
  rpcConnections = 0;
  private readonly runs: Record<string, number> = Object.fromEntries(
    TERMINAL_RUN_STATUSES.map((s) => [s, 0]),
  );
  private readonly redisErrors: ReturnType<typeof redisErrorCounter>;
  /**
   * Reads the exposition served at `/metrics`: this registry and the process metrics, or, in a
   * gateway of several processes (`PI_FLEET_GATEWAY_PROCESSES`), the sum over all of them
   * (replaced by `clusterWorkerMetrics` in gateway.ts).
   */
  scrape: () => Promise<Scrape> = () => scrape(this.registry);

  /**
   * @param sources what is sampled on scrape: open SSE streams, and the Redis connection and
   *   keys for `LLEN <prefix>:q:dispatch:wait`
   */
  constructor(sources: { sseClients: () => number; redis: Redis; keys: Keys }) {
    const registry = createMetricsRegistry("gateway");
    this.registry = registry;
    this.httpDuration = new Histogram({
      name: `${P}http_request_duration_seconds`,
      help: "HTTP request duration by method, route pattern and status (streams excluded: they never complete a response).",
      labelNames: ["method", "route", "status"] as const,
      buckets: FAST_BUCKETS,
      registers: [registry],
    });
    this.controlRoundTrip = new Histogram({
      name: `${P}control_round_trip_seconds`,
      help: "Gateway → owning worker control request until its reply, by request type and outcome (reply, timeout, no_receiver, lost, shutdown).",
      labelNames: ["type", "outcome"] as const,
      buckets: FAST_BUCKETS,
      registers: [registry],
    });
    new Gauge({
      name: `${P}sse_connections`,
      help: "Open Server-Sent Events streams on this gateway.",
      registers: [registry],
      collect() {
        this.set(sources.sseClients());
      },
    });
    const self = this;
    new Gauge({
      name: `${P}ws_connections`,
      help: "Open /v1/ws WebSockets on this gateway.",
      registers: [registry],
      collect() {
        this.set(self.wsConnections);
      },
    });
    new Gauge({
      name: `${P}rpc_connections`,
      help: "Open pi RPC WebSockets (…/sessions/{id}/rpc) on this gateway.",
      registers: [registry],
      collect() {
        this.set(self.rpcConnections);
      },
    });
    deltaCounter(
      registry,
      `${P}stream_frames_total`,
      "Stream frames (events and resets) sent to clients, by transport.",
      "transport",
      this.frames,
    );
    deltaCounter(
      registry,
      `${P}stream_lagging_disconnects_total`,
      "Clients cut with stream_lagging because they did not read fast enough, by transport.",
      "transport",
      this.lagging,
    );
    deltaCounter(
      registry,
      `${P}runs_total`,
      "Runs that reached a terminal state, recorded by this process, by state.",
      "state",
      this.runs,
    );
    new Gauge({
      name: `${P}dispatch_waiting`,
      help: "Projects waiting for an owner (LLEN of the dispatch wait list), sampled on scrape; -1 when Redis did not answer.",
      registers: [registry],
      // One Redis list, read by each process of a multi-process gateway: not a sum.
      aggregator: "max",
      async collect() {
        this.set(await sources.redis.llen(sources.keys.dispatchWaitList).catch(() => -1));
      },
    });
    this.redisErrors = redisErrorCounter(registry);
  }

  /** Counts a terminal run transition this process recorded (EventLog observer). */
  runEnded(state: RunStatus): void {
    this.runs[state] = (this.runs[state] ?? 0) + 1;
  }

  /** Counts the `error` events of a Redis connection. */
  watchRedis(connection: Redis, name: string): void {
    this.redisErrors.watch(connection, name);
  }

  /** Records one finished HTTP request. */
  observeRequest(method: string, route: string | undefined, status: number, ms: number): void {
    this.httpDuration.observe(
      { method: METHODS.has(method) ? method : "OTHER", route: route ?? "unmatched", status: String(status) },
      ms / 1000,
    );
  }
}

/** Installs the HTTP histogram hook and `GET /metrics` (operator-only in keyed mode). */
export function installMetrics(app: FastifyInstance): void {
  const s = app.services;
  const metrics = s.metrics;
  app.addHook("onResponse", async (request, reply) => {
    metrics.observeRequest(request.method, request.routeOptions.url, reply.statusCode, reply.elapsedTime);
  });
  app.get(
    "/metrics",
    {
      config: { auth: "public" },
      schema: { hide: true },
      onRequest: operatorOnly(s.env.PI_FLEET_ADMIN_TOKEN, "pi-fleet metrics"),
    },
    async (_request, reply) => {
      const { contentType, body } = await metrics.scrape();
      return reply.header("content-type", contentType).header("cache-control", "no-store").send(body);
    },
  );
}

/**
 * The unauthenticated metrics listener of `PI_FLEET_METRICS_PORT` (GET /metrics only). Bind it
 * where only the scraper reaches it (NetworkPolicy); it serves nothing else.
 */
export async function startMetricsListener(
  port: number,
  host: string,
  read: () => Promise<Scrape>,
  opts: { reusePort?: boolean } = {},
): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "no such route", code: "PF_ERR_ROUTE_NOT_FOUND" }));
      return;
    }
    read().then(
      ({ contentType, body }) => {
        res.writeHead(200, { "content-type": contentType, "cache-control": "no-store" });
        res.end(body);
      },
      () => {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: "metrics collection failed", code: "PF_ERR_INTERNAL" }));
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port, host, reusePort: opts.reusePort ?? false }, () => resolve());
  });
  return server;
}
