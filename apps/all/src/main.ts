/**
 * `npm start`: single-node mode — a gateway and a worker in one process (ARCHITECTURE.md
 * "Components"). If nothing answers at REDIS_URL and REDIS_URL was not set explicitly, an embedded
 * redis-server child is started with its data under WORKSPACE_DIR. Ctrl-C shuts down cleanly:
 * streams end, running runs are interrupted, leases released, the embedded Redis stopped.
 */
import { resolve } from "node:path";
import { ConfigError, describeStartupFailure, loadEnv, redisTarget, takeSecrets } from "@pi-fleet/config";
import { startGateway } from "@pi-fleet/gateway";
import { createLogger, handleShutdown } from "@pi-fleet/observability";
import { pingRedis } from "@pi-fleet/redis";
import { startWorker } from "@pi-fleet/worker";
import { type EmbeddedRedis, findRedisServer, startEmbeddedRedis } from "./embedded-redis.ts";

let env: ReturnType<typeof loadEnv>;
try {
  env = loadEnv();
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`pi-fleet: ${err.message}\n`);
    process.exit(1);
  }
  throw err;
}
const secrets = takeSecrets();
const logger = createLogger("pi-fleet", env.LOG_LEVEL);
if (env.PI_FLEET_GATEWAY_PROCESSES > 1) {
  logger.warn(
    { PI_FLEET_GATEWAY_PROCESSES: env.PI_FLEET_GATEWAY_PROCESSES },
    "single-node mode runs one gateway in this process; PI_FLEET_GATEWAY_PROCESSES applies to apps/gateway only",
  );
}

let embedded: EmbeddedRedis | undefined;
if (!(await pingRedis(env.REDIS_URL, 500))) {
  if (process.env.REDIS_URL) {
    process.stderr.write(`pi-fleet: nothing answers at REDIS_URL=${env.REDIS_URL}\n`);
    process.exit(1);
  }
  const binary = findRedisServer();
  if (!binary) {
    process.stderr.write(
      "pi-fleet: no Redis at redis://127.0.0.1:6379 and no redis-server binary to embed.\n" +
        "  Install one (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)\n" +
        "  or point REDIS_URL at a running Redis.\n",
    );
    process.exit(1);
  }
  const port = Number(new URL(env.REDIS_URL).port || 6379);
  embedded = await startEmbeddedRedis(binary, resolve(env.WORKSPACE_DIR, "..", "redis"), port);
  logger.info({ url: embedded.url }, "started embedded redis-server");
}

const fail = (err: unknown): never => {
  const line = describeStartupFailure("pi-fleet", err, env.REDIS_URL);
  if (!line) throw err;
  process.stderr.write(`${line}\n`);
  process.exit(1);
};
const worker = await startWorker(env, logger, secrets).catch(fail);
const gateway = await startGateway(env, logger).catch(async (err: unknown) => {
  await worker.close(0);
  await embedded?.stop();
  return fail(err);
});
// Which Redis (password redacted; `embeddedRedis` when this process started it) and key prefix.
logger.info(
  {
    url: gateway.url,
    workerId: worker.workerId,
    ...redisTarget(env),
    ...(embedded ? { embeddedRedis: true } : {}),
  },
  "pi-fleet single-node mode ready",
);
// Ctrl-C interrupts running runs at once; SIGTERM lets them finish within PI_FLEET_DRAIN_TIMEOUT_MS.
handleShutdown(logger, env.PI_FLEET_DRAIN_TIMEOUT_MS + 10_000, async ({ signal }) => {
  logger.info({ signal }, "shutting down");
  await gateway.close();
  await worker.close(signal === "SIGINT" ? 0 : undefined);
  await embedded?.stop();
});
