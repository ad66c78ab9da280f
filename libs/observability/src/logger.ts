/**
 * pino logger factory. Every process logs JSON lines; secrets are redacted by path so a careless
 * `log.info({req})` or a provider config can never print a key.
 */

import type { DestinationStream, LevelWithSilent, Logger } from "pino";
import { pino } from "pino";
import { logContextMixin } from "./log-context.ts";

export type { Logger } from "pino";

/** Paths censored in every log line (keys, tokens, auth headers). */
export const REDACT_PATHS = [
  "apiKey",
  "*.apiKey",
  "*.*.apiKey",
  "authorization",
  "*.authorization",
  "req.headers.authorization",
  "headers.authorization",
  "token",
  "*.token",
  "secret",
  "*.secret",
  "builtinKeys",
  "*.builtinKeys",
  // An ioredis ReplyError carries the failed command with its arguments (a stored secret, a
  // prompt) as `command.args`; pino's error serializer would print them.
  "err.command.args",
  "*.err.command.args",
  "command.args",
];

/**
 * Creates the process logger. `name` is the component (`gateway`, `worker`, `pi-fleet`). Lines
 * written inside `withLogContext` carry its ids (log-context.ts). `destination` defaults to stdout.
 */
export function createLogger(
  name: string,
  level: LevelWithSilent | string = "info",
  destination?: DestinationStream,
): Logger {
  const options = {
    name,
    level,
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    base: { pid: process.pid },
    mixin: logContextMixin,
  };
  return destination ? pino(options, destination) : pino(options);
}
