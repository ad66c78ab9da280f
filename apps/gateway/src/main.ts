/**
 * Gateway process entry: configuration, logger, signals. SIGTERM/SIGINT: readiness fails at once,
 * streams end (clients resume elsewhere with Last-Event-ID), connections close, exit 0; a second
 * signal exits immediately.
 */

import { ConfigError, describeStartupFailure, loadEnv, takeSecrets } from "@pi-fleet/config";
import { createLogger, handleShutdown } from "@pi-fleet/observability";
import { startGateway } from "./gateway.ts";

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
takeSecrets();
const logger = createLogger("pi-fleet-gateway", env.LOG_LEVEL);
const gateway = await startGateway(env, logger).catch((err: unknown) => {
  const line = describeStartupFailure("pi-fleet gateway", err, env.REDIS_URL);
  if (!line) throw err;
  process.stderr.write(`${line}\n`);
  process.exit(1);
});
logger.info({ url: gateway.url }, "gateway listening");
handleShutdown(logger, 25_000, async ({ signal }) => {
  logger.info({ signal }, "gateway shutting down");
  await gateway.close();
});
