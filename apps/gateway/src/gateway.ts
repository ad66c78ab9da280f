/**
 * Starts a gateway: connects to Redis (a command connection, a BullMQ connection, and two
 * subscriber connections — the stream hub and control replies), builds the app and listens.
 * Used by the gateway's own entry and by single-node mode.
 */

import cluster from "node:cluster";
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Env } from "@pi-fleet/config";
import { clusterWorkerMetrics, type Logger } from "@pi-fleet/observability";
import { RunProducer } from "@pi-fleet/queue";
import { connectRedis, createKeys } from "@pi-fleet/redis";
import { Registry } from "@pi-fleet/registry";
import { secretBoxFromEnv, unencryptedSecretsWarning, WorkspacePaths } from "@pi-fleet/security";
import { EventLog, SessionRecords, StreamHub } from "@pi-fleet/streams";
import { ApiKeyStore, AuditLog, OrgStore } from "@pi-fleet/tenancy";
import type { FastifyInstance } from "fastify";
import { buildApp } from "./app.ts";
import { LiveConnections } from "./auth/live-connections.ts";
import { ControlClient } from "./control-client.ts";
import { sharesPortsByReusePort } from "./gateway-processes.ts";
import { GatewayMetrics, startMetricsListener } from "./metrics.ts";
import type { GatewayServices } from "./services.ts";

/** A running gateway. */
export interface Gateway {
  app: FastifyInstance;
  /** `http://host:port` it listens on. */
  url: string;
  /** `http://host:port/metrics` of the unauthenticated metrics listener (`PI_FLEET_METRICS_PORT`). */
  metricsUrl?: string;
  services: GatewayServices;
  /** Ends streams, stops listening, closes Redis connections. */
  close(): Promise<void>;
}

/** Open mode must never be reachable from outside the machine (API.md "Tenancy and auth"). */
export function assertLoopback(host: string): void {
  const loopback = ["127.0.0.1", "localhost", "::1", "[::1]"];
  if (!loopback.includes(host) && !host.startsWith("127.")) {
    throw new Error(`HOST=${host} is not loopback: open mode (no API keys) only binds 127.0.0.1/::1`);
  }
}

/** Connects, builds and listens. @throws when Redis is unreachable or the port is taken. */
export async function startGateway(env: Env, logger: Logger): Promise<Gateway> {
  const openMode = env.PI_FLEET_ADMIN_TOKEN === undefined;
  if (openMode) assertLoopback(env.HOST);
  // Open mode (one `default` org on loopback) may store secrets unencrypted, with a warning;
  // keyed mode refuses to store provider keys without PI_FLEET_SECRET_KEY (503
  // PF_ERR_SECRET_KEY_REQUIRED, error-handler.ts), and its warning says so.
  const secrets = secretBoxFromEnv(env, { allowPlaintext: openMode, mode: openMode ? "open" : "keyed" });
  const warning = unencryptedSecretsWarning(secrets);
  if (warning) logger.warn(warning);
  const gatewayId = `gw-${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const keys = createKeys(env.PI_FLEET_KEY_PREFIX);
  const [redis, bullmq, hubSub, controlSub] = await Promise.all([
    connectRedis(env.REDIS_URL, "command", `${gatewayId}:cmd`),
    connectRedis(env.REDIS_URL, "bullmq", `${gatewayId}:queue`),
    connectRedis(env.REDIS_URL, "subscriber", `${gatewayId}:hub`),
    connectRedis(env.REDIS_URL, "subscriber", `${gatewayId}:control`),
  ]);
  const state = { draining: false, sseClients: 0 };
  const metrics = new GatewayMetrics({ sseClients: () => state.sseClients, redis, keys });
  for (const [name, conn] of Object.entries({ command: redis, bullmq, hub: hubSub, control: controlSub }))
    metrics.watchRedis(conn, name);
  // One process of a multi-process gateway (gateway-processes.ts): /metrics answers for all of them.
  if (cluster.isWorker && env.PI_FLEET_GATEWAY_PROCESSES > 1)
    metrics.scrape = clusterWorkerMetrics(metrics.registry);
  const producer = new RunProducer(bullmq, keys);
  const control = new ControlClient(redis, controlSub, keys, gatewayId, (org, project) =>
    producer.requestOwner(org, project),
  );
  control.onRoundTrip = (type, outcome, seconds) =>
    metrics.controlRoundTrip.observe({ type, outcome }, seconds);
  await control.start();
  const events = new EventLog(redis, keys, env.PI_FLEET_STREAM_MAXLEN, env.PI_FLEET_STREAM_MAX_AGE_MS);
  events.observer = { runEnded: (status) => metrics.runEnded(status) };
  const tenancy = {
    orgs: new OrgStore(redis, keys),
    keys: new ApiKeyStore(redis, keys),
    audit: new AuditLog(redis, keys),
  };
  const services: GatewayServices = {
    env,
    keys,
    redis,
    // Seal-only: the gateway stores provider keys but never decrypts them.
    registry: new Registry(redis, keys, secrets.sealOnly()),
    events,
    sessions: new SessionRecords(events),
    hub: new StreamHub(hubSub),
    producer,
    control,
    paths: new WorkspacePaths(env.WORKSPACE_DIR),
    tenancy,
    connections: new LiveConnections({
      keyed: !openMode,
      maxPerCredential: env.PI_FLEET_MAX_STREAMS_PER_KEY,
      keys: tenancy.keys,
      orgs: tenancy.orgs,
    }),
    metrics,
    state,
  };
  const app = await buildApp(services, logger.child({ component: "gateway" }));
  // Processes of one gateway bind their own sockets on the shared ports (gateway-processes.ts).
  const reusePort = sharesPortsByReusePort(env.PI_FLEET_GATEWAY_PROCESSES, env.PORT);
  const listenOptions = { port: env.PORT, host: env.HOST, reusePort };
  await app.listen(listenOptions);
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : env.PORT;
  const url = `http://${env.HOST.includes(":") ? `[${env.HOST}]` : env.HOST}:${port}`;
  const metricsListener =
    env.PI_FLEET_METRICS_PORT === undefined
      ? undefined
      : await startMetricsListener(env.PI_FLEET_METRICS_PORT, env.HOST, () => metrics.scrape(), {
          reusePort: sharesPortsByReusePort(env.PI_FLEET_GATEWAY_PROCESSES, env.PI_FLEET_METRICS_PORT),
        });
  const metricsAddress = metricsListener?.address();
  const metricsUrl =
    metricsAddress && typeof metricsAddress === "object"
      ? `${url.slice(0, url.lastIndexOf(":"))}:${metricsAddress.port}/metrics`
      : undefined;
  let closing: Promise<void> | undefined;
  return {
    app,
    url,
    ...(metricsUrl ? { metricsUrl } : {}),
    services,
    close() {
      closing ??= (async () => {
        services.state.draining = true;
        // Requests waiting for a worker (a command may be waited for minutes) answer 503 now, so
        // the HTTP server's close below is not held by them.
        control.stopWaiting();
        services.connections.close();
        metricsListener?.close();
        await app.close();
        await services.producer.close();
        await Promise.all([services.hub.close(), control.close()]);
        await Promise.all([redis.quit(), bullmq.quit()]).catch(() => undefined);
      })();
      return closing;
    },
  };
}
