/**
 * The primary of a gateway of several processes (`PI_FLEET_GATEWAY_PROCESSES` > 1): a gateway
 * process is one JavaScript thread, and fanning events out to thousands of streams is one socket
 * write per subscriber per event, so one process tops out at one core. The primary forks that many
 * gateway processes with node:cluster; they share PORT (and PI_FLEET_METRICS_PORT), the primary
 * handing new connections out round-robin, and each keeps its own stream hub, control channel and
 * Redis connections (4 per process). The primary serves no requests: it supervises and answers
 * the processes' metrics requests (cluster-metrics.ts in @pi-fleet/observability).
 *
 * Supervision: a process that dies after it listened is replaced after 1 s (its clients resume on
 * the others with their last offset, as after any gateway loss); more than {@link MAX_RESTARTS}
 * replacements within a minute, or a process that exits before it listened (bad configuration,
 * Redis unreachable at start: it printed why), stops the whole gateway with exit code 1, for the
 * orchestrator to restart. SIGTERM / SIGINT: every process drains as a single gateway does
 * (readiness fails, streams end, connections close); the primary exits when they all have, 0 when
 * they all exited 0. A repeated signal is passed on (a process exits at once on its second one).
 */
import cluster, { type Worker } from "node:cluster";
import { type Logger, serveClusterMetrics } from "@pi-fleet/observability";

/** Replacements of crashed processes allowed within {@link RESTART_WINDOW_MS}. */
export const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;
const RESTART_DELAY_MS = 1000;
/** How long the primary waits for its processes after a signal (each has 25 s of its own). */
const STOP_GRACE_MS = 30_000;

/**
 * Runs the primary until the gateway stops; then exits the process (never returns normally).
 * Call only in the cluster primary (`cluster.isPrimary`); the forked processes run main.ts again
 * and start a gateway each.
 *
 * @param count number of gateway processes (2–64)
 */
export function runGatewayProcesses(count: number, logger: Logger): void {
  serveClusterMetrics();
  const slots: (Worker | undefined)[] = new Array(count).fill(undefined);
  const listened = new Set<Worker>();
  const restarts: number[] = [];
  const timers = new Set<NodeJS.Timeout>();
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

  const fork = (index: number): void => {
    const worker = cluster.fork({ PI_FLEET_GATEWAY_PROCESS: String(index) });
    slots[index] = worker;
    worker.once("listening", () => listened.add(worker));
    worker.once("exit", (code, signal) => {
      slots[index] = undefined;
      const wasListening = listened.delete(worker);
      if (stopping) {
        if (code !== 0) failed = true;
        finishIfDone();
        return;
      }
      const now = Date.now();
      while (restarts.length > 0 && (restarts[0] ?? 0) < now - RESTART_WINDOW_MS) restarts.shift();
      if (!wasListening || restarts.length >= MAX_RESTARTS) {
        logger.error(
          { index, pid: worker.process.pid, code, signal, restartsInLastMinute: restarts.length },
          wasListening
            ? "gateway process crashed too often, stopping the gateway"
            : "gateway process exited before it listened, stopping the gateway",
        );
        failed = true;
        stopAll("SIGTERM");
        return;
      }
      restarts.push(now);
      logger.error(
        { index, pid: worker.process.pid, code, signal },
        "gateway process exited, starting a replacement",
      );
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (!stopping) fork(index);
      }, RESTART_DELAY_MS);
      timers.add(timer);
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
