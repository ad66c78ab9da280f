/**
 * Starts a gateway: connects to Redis (a command connection, a BullMQ connection, and two
 * subscriber connections — the stream hub and control replies), builds the app and listens.
 * Used by the gateway's own entry and by single-node mode.
 */

import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Env } from "@pi-fleet/config";
import { DEFAULT_ORG } from "@pi-fleet/contracts";
import type { Logger } from "@pi-fleet/observability";
import { RunProducer } from "@pi-fleet/queue";
import { connectRedis, createKeys } from "@pi-fleet/redis";
import { Registry } from "@pi-fleet/registry";
import { secretBoxFromEnv, unencryptedSecretsWarning, WorkspacePaths } from "@pi-fleet/security";
import { EventLog, StreamHub } from "@pi-fleet/streams";
import type { FastifyInstance } from "fastify";
import { buildApp } from "./app.ts";
import { ControlClient } from "./control-client.ts";
import type { GatewayServices } from "./services.ts";

/** A running gateway. */
export interface Gateway {
  app: FastifyInstance;
  /** `http://host:port` it listens on. */
  url: string;
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
  assertLoopback(env.HOST);
  // Open mode (one `default` org on loopback) may store secrets unencrypted, with a warning.
  const secrets = secretBoxFromEnv(env, { allowPlaintext: true });
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
  const producer = new RunProducer(bullmq, keys);
  const control = new ControlClient(redis, controlSub, keys, gatewayId, (org, project) =>
    producer.requestOwner(org, project),
  );
  await control.start();
  const services: GatewayServices = {
    env,
    keys,
    redis,
    // Seal-only: the gateway stores provider keys but never decrypts them.
    registry: new Registry(redis, keys, secrets.sealOnly()),
    events: new EventLog(redis, keys, env.PI_FLEET_STREAM_MAXLEN, env.PI_FLEET_STREAM_MAX_AGE_MS),
    hub: new StreamHub(hubSub),
    producer,
    control,
    paths: new WorkspacePaths(env.WORKSPACE_DIR),
    org: DEFAULT_ORG,
    state: { draining: false, sseClients: 0 },
  };
  const app = await buildApp(services, logger.child({ component: "gateway" }));
  await app.listen({ port: env.PORT, host: env.HOST });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : env.PORT;
  const url = `http://${env.HOST.includes(":") ? `[${env.HOST}]` : env.HOST}:${port}`;
  let closing: Promise<void> | undefined;
  return {
    app,
    url,
    services,
    close() {
      closing ??= (async () => {
        services.state.draining = true;
        await app.close();
        await services.producer.close();
        await Promise.all([services.hub.close(), control.close()]);
        await Promise.all([redis.quit(), bullmq.quit()]).catch(() => undefined);
      })();
      return closing;
    },
  };
}
