/**
 * The process surface the CLI touches (streams, environment, Ctrl-C), as one object so commands
 * can run in-process in tests with fake streams.
 */
import type { Env } from "./config-store.ts";

/** A stream the CLI writes to (process.stdout / process.stderr, or a test double). */
export type OutStream = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

/** The stream the CLI reads answers from (process.stdin, or a test double). */
export type InStream = NodeJS.ReadableStream & {
  isTTY?: boolean;
  setRawMode?: (mode: boolean) => unknown;
};

/** Streams, environment and interrupt handling of one CLI invocation. */
export interface Io {
  stdout: OutStream;
  stderr: OutStream;
  stdin: InStream;
  env: Env;
  /**
   * Calls `handler` on Ctrl-C (SIGINT) instead of exiting, until the returned function is
   * called. A second Ctrl-C while a handler is installed exits at once with 130.
   */
  onInterrupt(handler: () => void): () => void;
}

/** The real process. */
export function processIo(): Io {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    onInterrupt(handler) {
      let seen = false;
      const listener = (): void => {
        if (seen) process.exit(130);
        seen = true;
        handler();
      };
      process.on("SIGINT", listener);
      return () => {
        process.off("SIGINT", listener);
      };
    },
  };
}
