/**
 * Prometheus metrics plumbing shared by the gateway and the worker (prom-client does the text
 * exposition). Every gateway and worker instance owns its own registry — single-node mode and the
 * integration tests run several in one process, and prom-client's global registry would merge
 * (or refuse) their series. Names are `pifleet_*`; labels are bounded sets (no org, project or
 * session labels), see docs/operations.md "Metrics".
 *
 * Hot paths (one increment per stream frame) bump plain numbers; `deltaCounter` folds them into a
 * counter when Prometheus scrapes, so a frame costs an integer add, not a label lookup.
 */
import { Counter, collectDefaultMetrics, Registry } from "prom-client";

export { Counter, Gauge, Histogram, Registry } from "prom-client";

/** Prefix of every pi-fleet series. */
export const METRIC_PREFIX = "pifleet_";

/** Latency buckets in seconds for fast operations (HTTP, control, dispatch): 0.5 ms … 10 s. */
export const FAST_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Buckets in seconds for whole runs: 100 ms … 1 h. */
export const RUN_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

/** A fresh registry whose series all carry `component`. */
export function createMetricsRegistry(component: "gateway" | "worker"): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ component });
  return registry;
}

let processRegistry: Registry | undefined;

/**
 * Node's process metrics (`process_*`, `nodejs_*`: CPU, memory, event loop lag, GC; unprefixed so
 * standard dashboards work), collected once per process whatever the number of instances in it.
 */
export function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/**
 * A counter fed from plain numbers on scrape: `counts[label]` only ever grows; each collect adds
 * what grew since the previous one.
 */
export function deltaCounter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelName: string,
  counts: Record<L, number>,
): Counter<string> {
  const reported: Partial<Record<L, number>> = {};
  return new Counter({
    name,
    help,
    labelNames: [labelName],
    registers: [registry],
    collect() {
      for (const key of Object.keys(counts) as L[]) {
        const delta = counts[key] - (reported[key] ?? 0);
        // Also creates the series at 0 before the first event, so rate() works from the start.
        this.inc({ [labelName]: key }, delta > 0 ? delta : 0);
        reported[key] = counts[key];
      }
    },
  });
}

/** Anything that emits `error` (an ioredis connection). */
interface ErrorEmitter {
  on(event: "error", listener: (err: Error) => void): unknown;
}

/**
 * Counts `error` events of Redis connections: `pifleet_redis_errors_total{connection}`. Call
 * `watch(connection, name)` for each connection the process opens (`name` is its role).
 */
export function redisErrorCounter(registry: Registry): {
  counter: Counter<"connection">;
  watch(connection: ErrorEmitter, name: string): void;
} {
  const counter = new Counter({
    name: `${METRIC_PREFIX}redis_errors_total`,
    help: "Error events of the process's Redis connections (refused connects, resets, timeouts), by connection role.",
    labelNames: ["connection"] as const,
    registers: [registry],
  });
  return {
    counter,
    watch(connection, name) {
      counter.inc({ connection: name }, 0);
      connection.on("error", () => counter.inc({ connection: name }));
    },
  };
}

/** A scrape's answer: the Prometheus exposition text and its content type. */
export interface Scrape {
  contentType: string;
  body: string;
}

/** The text exposition of an instance's registry followed by the process metrics. */
export async function scrape(registry: Registry): Promise<Scrape> {
  const [own, proc] = await Promise.all([registry.metrics(), processMetrics().metrics()]);
  return { contentType: registry.contentType, body: `${own}\n${proc}` };
}
