/**
 * The primary of a gateway of several processes (`PI_FLEET_GATEWAY_PROCESSES` > 1): a gateway
 * process is one JavaScript thread, and fanning events out to thousands of streams is one socket
 * write per subscriber per event, so one process tops out at one core. The primary forks that many
 * gateway processes with node:cluster. They share PORT (and PI_FLEET_METRICS_PORT) through
 * SO_REUSEPORT: each binds its own listening socket and the kernel spreads new connections over
 * them, so the primary is not in the accept path and a dying process's waiting connections are
 * reset instead of handed to it (with PORT=0 node:cluster's round-robin shares one random port).
 * Each keeps its own stream hub, control channel and Redis connections (4 per process). The
 * primary serves no requests: it supervises and collects metrics (`ClusterMetrics`).
 *
 * Supervision: a process counts as ready once it reports so ({@link reportGatewayReady}: listening,
 * signal handlers installed). If one exits before all of them were ready once (bad configuration,
 * Redis unreachable at start: it printed why), the gateway stops with exit code 1. Later, an exited
 * process is replaced after 1 s, doubling per replacement within the last minute up to 30 s (its
 * clients resume on the others with their last offset, as after any gateway loss); the gateway
 * gives up (exit 1, for the orchestrator) only when {@link MAX_RESTARTS} replacements within a
 * minute have not brought any process back to ready. SIGTERM / SIGINT: every process drains as a
 * single gateway does (readiness fails, streams end, connections close); the primary exits when
 * they all have, 0 unless one failed (a process still starting that the signal ended is not a
 * failure). A repeated signal is passed on (a process exits at once on its second one).
 */
import cluster, { type Worker } from "node:cluster";
import { ClusterMetrics, type Logger } from "@pi-fleet/observability";

/** Replacements within a minute after which, with no process ready, the gateway gives up. */
export const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;
const RESTART_DELAY_MS = 1000;
const MAX_RESTART_DELAY_MS = 30_000;
/** How long the primary waits for its processes after a signal (each has 25 s of its own). */
const STOP_GRACE_MS = 30_000;
const READY = "pi-fleet:gateway-ready";

/**
 * In a gateway process forked by {@link runGatewayProcesses}: tells the primary this process
 * serves (call once it listens and its signal handlers are installed). No-op elsewhere.
 */
export function reportGatewayReady(): void {
  if (cluster.isWorker && process.send && process.connected) process.send({ type: READY });
}

/** Whether a gateway process should bind its ports with SO_REUSEPORT (see the module comment). */
export function sharesPortsByReusePort(processes: number, port: number): boolean {
  return cluster.isWorker && processes > 1 && port !== 0;
}

/**
 * Runs the primary until the gateway stops, then exits the process. Call only in the cluster
 * primary (`cluster.isPrimary`); the forked processes run main.ts again and start a gateway each.
 *
 * @param count number of gateway processes (2–64)
 */
export function runGatewayProcesses(count: number, logger: Logger): void {
  const metrics = new ClusterMetrics();
  const slots: (Worker | undefined)[] = new Array(count).fill(undefined);
  const ready = new Set<Worker>();
  const restarts: number[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let started = false; // every process was ready at least once
  let stopping = false;
  let failed = false;

  const live = (): Worker[] => slots.filter((w): w is Worker => w !== undefined);

  const finishIfDone = (): void => {
    if (!stopping || live().length > 0) return;
    logger.info({ failed }, "gateway processes stopped");
    process.exit(failed ? 1 : 0);
  };

  const stopAll = (signal: NodeJS.Signals): void => {
    for (const timer of timers) clearTimeout(timer);
    timers.clear();
    for (const worker of live()) worker.process.kill(signal);
    if (stopping) return;
    stopping = true;
    setTimeout(() => {
      logger.error({ graceMs: STOP_GRACE_MS }, "gateway processes did not stop in time, killing them");
      for (const worker of live()) worker.process.kill("SIGKILL");
      process.exit(1);
    }, STOP_GRACE_MS).unref();
    finishIfDone();
  };

  const replace = (index: number, exit: Record<string, unknown>): void => {
    const now = Date.now();
    while (restarts.length > 0 && (restarts[0] ?? 0) < now - RESTART_WINDOW_MS) restarts.shift();
    if (restarts.length >= MAX_RESTARTS && ready.size === 0) {
      logger.error(
        { ...exit, restartsInLastMinute: restarts.length },
        "no gateway process is ready after repeated replacements, stopping the gateway",
      );
      failed = true;
      stopAll("SIGTERM");
      return;
    }
    const delayMs = Math.min(MAX_RESTART_DELAY_MS, RESTART_DELAY_MS * 2 ** restarts.length);
    restarts.push(now);
    logger.error({ ...exit, delayMs }, "gateway process exited, starting a replacement");
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!stopping) fork(index);
    }, delayMs);
    timers.add(timer);
  };

  const fork = (index: number): void => {
    const worker = cluster.fork({ PI_FLEET_GATEWAY_PROCESS: String(index) });
    slots[index] = worker;
    // An IPC write to a process that died a moment ago fails with EPIPE as an 'error' event.
    worker.on("error", (err) => logger.warn({ err, index }, "gateway process IPC error"));
    worker.on("message", (message: unknown) => {
      if ((message as { type?: unknown } | null)?.type !== READY) return;
      ready.add(worker);
      metrics.add(worker);
      if (!started && ready.size === count) {
        started = true;
        logger.info({ processes: count }, "gateway processes ready");
      }
    });
    worker.once("exit", (code, signal) => {
      slots[index] = undefined;
      const wasReady = ready.delete(worker);
      void metrics.retire(worker).catch((err: unknown) => logger.warn({ err }, "could not retire metrics"));
      const exit = { index, childPid: worker.process.pid, code, signal, wasReady };
      if (stopping) {
        // A process still starting has no signal handler yet: the forwarded signal ends it.
        if (code !== 0 && !(signal !== null && !wasReady)) failed = true;
        finishIfDone();
        return;
      }
      if (!started) {
        logger.error(exit, "gateway process exited before the gateway was ready, stopping the gateway");
        failed = true;
        stopAll("SIGTERM");
        return;
      }
      replace(index, exit);
    });
  };

  let lastSignalAt = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    // A Ctrl-C reaches the processes from the terminal too, and launchers repeat it: within 1 s
    // it is the same signal (as in handleShutdown).
    if (stopping && Date.now() - lastSignalAt < 1000) return;
    lastSignalAt = Date.now();
    logger.info({ signal }, "gateway shutting down its processes");
    stopAll("SIGTERM");
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  for (let index = 0; index < count; index++) fork(index);
  logger.info({ processes: count }, "gateway primary started");
}
