/**
 * One clear line instead of a stack trace for the failures an operator can fix at start:
 * invalid configuration, an unusable secret key, an unreachable Redis.
 */

/**
 * Describes `err` as one line for `component` ("pi-fleet", "pi-fleet gateway", …), or returns
 * undefined for an unexpected error that deserves its stack trace.
 */
export function describeStartupFailure(
  component: string,
  err: unknown,
  redisUrl?: string,
): string | undefined {
  if (!(err instanceof Error)) return undefined;
  if (err.name === "ConfigError" || err.name === "SecretBoxError") return `${component}: ${err.message}`;
  if (/ECONNREFUSED|ENOTFOUND|ETIMEDOUT|connect/i.test(err.message) && redisUrl) {
    return `${component}: cannot reach Redis at ${redisUrl.replace(/\/\/[^@]*@/, "//***@")} (${err.message})`;
  }
  if (/EADDRINUSE/.test(err.message)) return `${component}: ${err.message}`;
  return undefined;
}
