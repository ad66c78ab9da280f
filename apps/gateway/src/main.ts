/**
 * Gateway process entry: configuration, logger, signals. SIGTERM/SIGINT: readiness fails at once,
 * streams end (clients resume elsewhere with Last-Event-ID), connections close, exit 0; a second
 * signal exits immediately. With PI_FLEET_GATEWAY_PROCESSES > 1 this process becomes the primary of
 * that many gateway processes (gateway-processes.ts), each of which runs this file again.
 */
import cluster from "node:cluster";

import { ConfigError, describeStartupFailure, loadEnv, redisTarget, takeSecrets } from "@pi-fleet/config";
import { createLogger, handleShutdown } from "@pi-fleet/observability";
import { reportGatewayReady, runGatewayProcesses } from "./gateway-processes.ts";

let env: ReturnType<typeof loadEnv>;
try {
  env = loadEnv();
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`pi-fleet gateway: ${err.message}\n`);
    process.exit(1);
  }
  throw err;
}
if (cluster.isPrimary && env.PI_FLEET_GATEWAY_PROCESSES > 1) {
  // The forked processes inherit this environment and read their secrets themselves: the primary
  // keeps them (takeSecrets would take them from the forks too) and runs nothing else.
  runGatewayProcesses(env.PI_FLEET_GATEWAY_PROCESSES, createLogger("pi-fleet-gateway", env.LOG_LEVEL));
} else {
  await runGateway(env);
}

async function runGateway(env: ReturnType<typeof loadEnv>): Promise<void> {
  // Loaded here, not at the top: a multi-process gateway's primary never needs the app (Fastify,
  // BullMQ, the routes), so it stays a small process.
  const { startGateway } = await import("./gateway.ts");
  takeSecrets();
  const logger = createLogger("pi-fleet-gateway", env.LOG_LEVEL);
  const gateway = await startGateway(env, logger).catch((err: unknown) => {
    const line = describeStartupFailure("pi-fleet gateway", err, env.REDIS_URL);
    if (!line) throw err;
    process.stderr.write(`${line}\n`);
    process.exit(1);
  });
  // Which Redis (password redacted) and key prefix: a gateway on the wrong one serves nothing.
  logger.info({ url: gateway.url, ...redisTarget(env) }, "gateway listening");
  handleShutdown(logger, 25_000, async ({ signal }) => {
    logger.info({ signal }, "gateway shutting down");
    await gateway.close();
  });
  reportGatewayReady();
}
