/**
 * Starts a worker process's parts: Redis connections, the model catalog publication, project
 * ownership (dispatch), the control inbox and maintenance. Used by the worker's own entry and by
 * single-node mode.
 */
import { mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { ConfigError, type Env } from "@pi-fleet/config";
import { LeaseManager, RunQuota } from "@pi-fleet/leases";
import { type Logger, scrape } from "@pi-fleet/observability";
import { listBuiltinModels, preparePiProcess, probeSandbox, RuntimeCache } from "@pi-fleet/pi-runtime";
import { connectRedis, createKeys } from "@pi-fleet/redis";
import { Registry } from "@pi-fleet/registry";
import { secretBoxFromEnv, unencryptedSecretsWarning, WorkspacePaths } from "@pi-fleet/security";
import { EventLog, SessionRecords } from "@pi-fleet/streams";
import { ControlInbox } from "./control-inbox.ts";
import { DisabledOrgWatch } from "./disabled-org-watch.ts";
import { startHealthServer } from "./health-server.ts";
import { startMaintenance } from "./maintenance.ts";
import { WorkerMetrics } from "./metrics.ts";
import { assertOperatorPaths } from "./operator-paths.ts";
import { Ownership } from "./ownership.ts";
import { presetProvidersFrom, publishablePreset } from "./presets.ts";
import { assertProjectTemplateDir } from "./project-template.ts";
import { RunSlots } from "./run-slots.ts";
import type { WorkerContext } from "./worker-context.ts";

/** A running worker. */
export interface WorkerNode {
  workerId: string;
  ownership: Ownership;
  /** Lifecycle flags (readiness reads `draining`). */
  state: { draining: boolean };
  /** `http://host:port` of the probe server, when `PI_FLEET_WORKER_PORT` is set. */
  healthUrl?: string;
  /**
   * Drains and stops: readiness fails at once, running runs may finish within `drainMs`
   * (default `PI_FLEET_DRAIN_TIMEOUT_MS`), the rest are interrupted, leases are released.
   */
  close(drainMs?: number): Promise<void>;
}

/** Provider env keys → built-in pi provider ids (the usual pi names). */
function builtinKeysFrom(secrets: Record<string, string>): Record<string, string> {
  const keys: Record<string, string> = {};
  if (secrets.ANTHROPIC_API_KEY) keys.anthropic = secrets.ANTHROPIC_API_KEY;
  if (secrets.OPENAI_API_KEY) keys.openai = secrets.OPENAI_API_KEY;
  return keys;
}

/**
 * Starts the worker.
 * @param secrets provider keys already removed from `process.env` (see `takeSecrets`)
 * @throws ConfigError for invalid `LITELLM_*` settings, an unusable
 *   `PI_FLEET_PROJECT_TEMPLATE_DIR`, operator resource paths that overlap `WORKSPACE_DIR`, or
 *   `PI_FLEET_SANDBOX=bwrap` when bubblewrap cannot run here
 *   (before anything connects); Redis errors when unreachable
 */
export async function startWorker(
  env: Env,
  logger: Logger,
  secrets: Record<string, string>,
): Promise<WorkerNode> {
  const workerId = env.PI_FLEET_WORKER_ID ?? `${hostname()}-${process.pid}`;
  const presetProviders = presetProvidersFrom(env, secrets);
  if (env.PI_FLEET_PROJECT_TEMPLATE_DIR !== undefined) {
    await assertProjectTemplateDir(env.PI_FLEET_PROJECT_TEMPLATE_DIR, env.WORKSPACE_DIR);
  }
  await assertOperatorPaths(env);
  // Probed once: a sandbox that cannot start would fail every bash command of every session.
  await probeSandbox({ mode: env.PI_FLEET_SANDBOX, network: env.PI_FLEET_SANDBOX_NETWORK }).catch(
    (err: unknown) => {
      throw new ConfigError(`PI_FLEET_SANDBOX=bwrap, but ${(err as Error).message}`);
    },
  );
  // Workers open the sealed provider keys (the gateway only seals them). Open mode may store
  // secrets unencrypted, with a warning at boot.
  const secretBox = secretBoxFromEnv(env, { allowPlaintext: true });
  const warning = unencryptedSecretsWarning(secretBox);
  if (warning) logger.warn({ workerId }, warning);
  const agentDir = resolve(env.WORKSPACE_DIR, "..", ".agents", workerId);
  await mkdir(agentDir, { recursive: true });
  preparePiProcess(agentDir);
  const keys = createKeys(env.PI_FLEET_KEY_PREFIX);
  const [redis, bullmq, inboxSub] = await Promise.all([
    connectRedis(env.REDIS_URL, "command", `${workerId}:cmd`),
    connectRedis(env.REDIS_URL, "bullmq", `${workerId}:queue`),
    connectRedis(env.REDIS_URL, "subscriber", `${workerId}:inbox`),
  ]);
  const registry = new Registry(redis, keys, secretBox);
  // Gauges read the ownership created below, only when scraped (after start).
  const live: { ownership?: Ownership; slots?: RunSlots } = {};
  const metrics = new WorkerMetrics({
    leasesHeld: () => live.ownership?.owned ?? 0,
    runsRunning: () => live.slots?.inUse ?? 0,
    runsPending: async () => (live.ownership ? live.ownership.pendingRuns() : 0),
  });
  for (const [name, conn] of Object.entries({ command: redis, bullmq, inbox: inboxSub }))
    metrics.watchRedis(conn, name);
  const events = new EventLog(redis, keys, env.PI_FLEET_STREAM_MAXLEN, env.PI_FLEET_STREAM_MAX_AGE_MS);
  events.observer = { runEnded: (status) => metrics.runEnded(status), fenced: (op) => metrics.fenced(op) };
  const builtinKeys = builtinKeysFrom(secrets);
  const ctx: WorkerContext = {
    env,
    workerId,
    logger: logger.child({ component: "worker", workerId }),
    keys,
    redis,
    bullmq,
    registry,
    events,
    sessions: new SessionRecords(events),
    leases: new LeaseManager(redis, keys, workerId, env.PI_FLEET_LEASE_TTL_MS),
    runtimes: new RuntimeCache(),
    paths: new WorkspacePaths(env.WORKSPACE_DIR),
    agentDir,
    slots: new RunSlots(env.PI_FLEET_MAX_RUNS),
    quota: new RunQuota(redis, keys, env.PI_FLEET_ORG_MAX_RUNS),
    metrics,
    state: { draining: false },
    builtinKeys,
    presetProviders,
  };
  await registry.publishCatalog({
    models: await listBuiltinModels(),
    envProviders: Object.keys(builtinKeys),
    presetProviders: presetProviders.map(publishablePreset),
    publishedAt: new Date().toISOString(),
  });
  const ownership = new Ownership(ctx);
  live.ownership = ownership;
  live.slots = ctx.slots;
  const inbox = new ControlInbox(ctx, inboxSub, ownership);
  await inbox.start();
  const maintenance = startMaintenance(ctx);
  ownership.start();
  const disabledOrgs = new DisabledOrgWatch(ctx, ownership);
  const health =
    env.PI_FLEET_WORKER_PORT === undefined
      ? undefined
      : await startHealthServer(
          env.PI_FLEET_WORKER_PORT,
          env.HOST,
          redis,
          ctx.state,
          () => ({
            ownedProjects: ownership.owned,
            runningRuns: ctx.slots.inUse,
          }),
          () => scrape(metrics.registry),
        );
  const address = health?.address();
  const healthUrl = address && typeof address === "object" ? `http://${env.HOST}:${address.port}` : undefined;
  ctx.logger.info({ healthUrl }, "worker started");
  let closing: Promise<void> | undefined;
  return {
    workerId,
    ownership,
    state: ctx.state,
    healthUrl,
    close(drainMs = env.PI_FLEET_DRAIN_TIMEOUT_MS) {
      ctx.state.draining = true;
      closing ??= (async () => {
        // The watch goes on during the drain: a disabled org's runs do not get the drain's grace.
        await ownership.close(drainMs);
        await disabledOrgs.close();
        health?.close();
        await maintenance.close().catch(() => undefined);
        await inbox.close();
        ctx.quota.close();
        await Promise.all([redis.quit(), bullmq.quit()]).catch(() => undefined);
        ctx.logger.info("worker stopped");
      })();
      return closing;
    },
  };
}
