/**
 * Graceful shutdown for the process entries. SIGINT/SIGTERM run `close` once and exit 0 (1 if it
 * throws or exceeds `graceMs`). A repeated signal within 1 s is the same Ctrl-C delivered twice —
 * by the terminal to the whole process group and again by a launcher forwarding it (npm, the
 * pinned `node` package's shim) — and is ignored; a later one exits at once. Fatal errors
 * (uncaught exception, unhandled rejection) are logged and shut down the same way.
 */
import type { Logger } from "pino";

/** Installs the handlers. `close` receives the signal name or the fatal error. */
export function handleShutdown(
  logger: Logger,
  graceMs: number,
  close: (cause: { signal?: string; err?: unknown }) => Promise<void>,
): void {
  let startedAt = 0;
  const run = (cause: { signal?: string; err?: unknown }) => {
    startedAt = Date.now();
    const timer = setTimeout(() => {
      logger.error({ graceMs }, "shutdown took too long, exiting");
      process.exit(1);
    }, graceMs);
    timer.unref();
    close(cause).then(
      () => process.exit(cause.err ? 1 : 0),
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  const onSignal = (signal: string) => {
    if (startedAt === 0) return run({ signal });
    if (Date.now() - startedAt < 1000) return;
    logger.warn({ signal }, "second signal, exiting now");
    process.exit(1);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const fatal = (err: unknown) => {
    logger.error({ err }, "fatal error, shutting down");
    if (startedAt === 0) run({ err });
  };
  process.on("uncaughtException", fatal);
  process.on("unhandledRejection", fatal);
}
