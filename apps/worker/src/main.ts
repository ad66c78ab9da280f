/**
 * Worker process entry: configuration, secrets out of the environment (so the agent's shell
 * cannot inherit them), logger, signals. SIGTERM/SIGINT: running runs are interrupted
 * (`run_interrupted {reason: "shutdown"}`), leases released, exit 0.
 */

import { ConfigError, describeStartupFailure, loadEnv, redisTarget, takeSecrets } from "@pi-fleet/config";
import { createLogger, handleShutdown } from "@pi-fleet/observability";
import { startWorker } from "./worker-node.ts";

let env: ReturnType<typeof loadEnv>;
try {
  env = loadEnv();
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`pi-fleet worker: ${err.message}\n`);
    process.exit(1);
  }
  throw err;
}
const secrets = takeSecrets();
const logger = createLogger("pi-fleet-worker", env.LOG_LEVEL);
const worker = await startWorker(env, logger, secrets).catch((err: unknown) => {
  const line = describeStartupFailure("pi-fleet worker", err, env.REDIS_URL);
  if (!line) throw err;
  process.stderr.write(`${line}\n`);
  process.exit(1);
});
logger.info({ workerId: worker.workerId, ...redisTarget(env) }, "worker started");
handleShutdown(logger, env.PI_FLEET_DRAIN_TIMEOUT_MS + 10_000, async ({ signal }) => {
  logger.info({ signal }, "worker shutting down");
  await worker.close();
});
