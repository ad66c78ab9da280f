/**
 * The worker's Prometheus metrics (docs/operations.md "Metrics"), served at `GET /metrics` on its
 * probe port (`PI_FLEET_WORKER_PORT`, no auth: that port is for the kubelet and the scraper only).
 * Run outcomes and timings, ownership (leases held, lost, failovers), fencing rejections, pending
 * runs of the owned projects and Redis connection errors. Gauges are sampled on scrape.
 */
import { type RunStatus, TERMINAL_RUN_STATUSES } from "@pi-fleet/contracts";
import {
  Counter,
  createMetricsRegistry,
  deltaCounter,
  FAST_BUCKETS,
  Gauge,
  Histogram,
  METRIC_PREFIX,
  type Registry,
  RUN_BUCKETS,
  redisErrorCounter,
} from "@pi-fleet/observability";
import type { Redis } from "@pi-fleet/redis";

const P = METRIC_PREFIX;

/** Pending-run sampling gives up after this long (ms) and keeps the previous value. */
const SAMPLE_TIMEOUT_MS = 2000;

/** What the gauges sample on scrape. */
export interface WorkerMetricSources {
  /** Projects owned now (= leases held). */
  leasesHeld(): number;
  /** Runs executing now. */
  runsRunning(): number;
  /** Runs of the owned projects that wait to start (queued, deferred, or fetched and waiting). */
  runsPending(): Promise<number>;
}

/** One worker's metrics. */
export class WorkerMetrics {
  readonly registry: Registry;
  readonly runDuration: Histogram<"state">;
  readonly firstEvent: Histogram<string>;
  readonly dispatchLatency: Histogram<string>;
  readonly failovers: Counter<string>;
  readonly leasesLost: Counter<"reason">;
  private readonly runs: Record<string, number> = Object.fromEntries(
    TERMINAL_RUN_STATUSES.map((s) => [s, 0]),
  );
  private readonly fencedWrites: Record<"append" | "start" | "transition", number> = {
    append: 0,
    start: 0,
    transition: 0,
  };
  private readonly redisErrors: ReturnType<typeof redisErrorCounter>;

  constructor(sources: WorkerMetricSources) {
    const registry = createMetricsRegistry("worker");
    this.registry = registry;
    this.runDuration = new Histogram({
      name: `${P}run_duration_seconds`,
      help: "Run duration from run_started to its terminal state, by state (runs this worker executed).",
      labelNames: ["state"] as const,
      buckets: RUN_BUCKETS,
      registers: [registry],
    });
    this.firstEvent = new Histogram({
      name: `${P}run_first_event_seconds`,
      help: "Time from run_started to the first pi event of the run (session open + model first token).",
      buckets: [...FAST_BUCKETS, 30, 60],
      registers: [registry],
    });
    this.dispatchLatency = new Histogram({
      name: `${P}dispatch_latency_seconds`,
      help: "Gateway enqueue to run_started (wall clocks of two machines), including any wait behind earlier runs of the session.",
      buckets: [...FAST_BUCKETS, 30, 60, 300],
      registers: [registry],
    });
    this.failovers = new Counter({
      name: `${P}failovers_total`,
      help: "Project takeovers that found runs of a previous owner still running (reported run_interrupted).",
      registers: [registry],
    });
    this.leasesLost = new Counter({
      name: `${P}leases_lost_total`,
      help: "Project leases this worker lost while owning them, by reason (deadline: renewals failed; taken_over).",
      labelNames: ["reason"] as const,
      registers: [registry],
    });
    for (const reason of ["deadline", "taken_over"]) this.leasesLost.inc({ reason }, 0);
    deltaCounter(
      registry,
      `${P}runs_total`,
      "Runs that reached a terminal state, recorded by this process, by state.",
      "state",
      this.runs,
    );
    deltaCounter(
      registry,
      `${P}fencing_rejections_total`,
      "Writes refused because this worker no longer held the project lease, by operation.",
      "op",
      this.fencedWrites,
    );
    new Gauge({
      name: `${P}leases_held`,
      help: "Project leases held (projects owned) by this worker.",
      registers: [registry],
      collect() {
        this.set(sources.leasesHeld());
      },
    });
    new Gauge({
      name: `${P}runs_running`,
      help: "Runs executing on this worker.",
      registers: [registry],
      collect() {
        this.set(sources.runsRunning());
      },
    });
    new Gauge({
      name: `${P}runs_pending`,
      help: "Runs of the projects this worker owns that wait to start (sum over workers = fleet backlog of owned projects).",
      registers: [registry],
      async collect() {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), SAMPLE_TIMEOUT_MS);
        });
        const pending = await Promise.race([sources.runsPending().catch(() => undefined), timeout]);
        clearTimeout(timer);
        if (pending !== undefined) this.set(pending);
      },
    });
    this.redisErrors = redisErrorCounter(registry);
  }

  /** Counts a terminal run transition this process recorded (EventLog observer). */
  runEnded(state: RunStatus): void {
    this.runs[state] = (this.runs[state] ?? 0) + 1;
  }

  /** Counts a write refused by the fence (EventLog observer). */
  fenced(op: "append" | "start" | "transition"): void {
    this.fencedWrites[op]++;
  }

  /** Records a run start: dispatch latency from the gateway's wall-clock stamp. */
  runStarted(enqueuedAtMs: number | undefined): void {
    if (enqueuedAtMs !== undefined)
      this.dispatchLatency.observe(Math.max(0, Date.now() - enqueuedAtMs) / 1000);
  }

  /** Counts a lost lease (`reason` is ProjectLease's text). */
  leaseLost(reason: string): void {
    this.leasesLost.inc({ reason: /deadline/.test(reason) ? "deadline" : "taken_over" });
  }

  /** Counts the `error` events of a Redis connection. */
  watchRedis(connection: Redis, name: string): void {
    this.redisErrors.watch(connection, name);
  }
}
