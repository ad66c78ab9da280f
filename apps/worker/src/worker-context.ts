/**
 * Shared dependencies of one worker process, passed to every component (no globals).
 */
import type { Env } from "@pi-fleet/config";
import type { LeaseManager, RunQuota } from "@pi-fleet/leases";
import type { Logger } from "@pi-fleet/observability";
import type { RuntimeCache } from "@pi-fleet/pi-runtime";
import type { Keys, Redis } from "@pi-fleet/redis";
import type { Registry } from "@pi-fleet/registry";
import type { WorkspacePaths } from "@pi-fleet/security";
import type { EventLog, SessionRecords } from "@pi-fleet/streams";
import type { WorkerMetrics } from "./metrics.ts";
import type { PresetProvider } from "./presets.ts";
import type { RunSlots } from "./run-slots.ts";

/** Everything a worker component needs. */
export interface WorkerContext {
  env: Env;
  workerId: string;
  logger: Logger;
  keys: Keys;
  /** Command connection (scripts, registry reads). */
  redis: Redis;
  /** Connection shared by BullMQ Queue/Worker objects (each Worker duplicates it for blocking). */
  bullmq: Redis;
  registry: Registry;
  events: EventLog;
  /** Session creation (fork, clone, new_session) with its activity event, fenced. */
  sessions: SessionRecords;
  leases: LeaseManager;
  runtimes: RuntimeCache;
  paths: WorkspacePaths;
  /**
   * Worker-private directory, pi's agentDir (`WORKSPACE_DIR/../.agents/<worker id>`). Sessions'
   * bash temp dirs are made in os.tmpdir() (pi-runtime open-session.ts).
   */
  agentDir: string;
  /** Worker-wide run capacity (`PI_FLEET_MAX_RUNS`). */
  slots: RunSlots;
  /** Fleet-wide concurrent-run quota per org (PI_FLEET_ORG_MAX_RUNS). */
  quota: RunQuota;
  /** Prometheus metrics of this worker (metrics.ts). */
  metrics: WorkerMetrics;
  /** Worker lifecycle flags read by readiness and the components. */
  state: { draining: boolean };
  /** Built-in provider keys from the environment, for the `default` org only. */
  builtinKeys: Record<string, string>;
  /** Operator presets (the LiteLLM preset) with their keys, for every org (see presets.ts). */
  presetProviders: PresetProvider[];
}
