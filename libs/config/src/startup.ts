/**
 * One clear line instead of a stack trace for the failures an operator can fix at start:
 * invalid configuration, an unusable secret key, an unreachable Redis. Also what a process says at
 * boot about the Redis it uses (never a password).
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
    return `${component}: cannot reach Redis at ${redactRedisUrl(redisUrl)} (${err.message})`;
  }
  if (/EADDRINUSE/.test(err.message)) return `${component}: ${err.message}`;
  return undefined;
}

/**
 * `url` (a `REDIS_URL`) safe to log: a password in the user info (`redis://:pw@host`,
 * `redis://user:pw@host`) or in a query parameter named like one (`password`, `sentinelPassword`)
 * becomes `***`; the host, port, database and other parameters stay. The user info (up to the
 * last `@` before the query or fragment) goes first, whatever the URL parser makes of it,
 * and a URL that does not parse loses its whole query too.
 */
export function redactRedisUrl(url: string): string {
  // The user info ends at the last `@` before the query or fragment (an `@` in the query is not
  // one; a `/` may be part of an unencoded password, as in base64, so it does not end it).
  const slashes = url.indexOf("//");
  const from = slashes < 0 ? 0 : slashes + 2;
  const tail = url.slice(from).search(/[?#]/);
  const authorityEnd = tail < 0 ? url.length : from + tail;
  const at = url.lastIndexOf("@", authorityEnd - 1);
  const blanked = slashes >= 0 && at >= from ? `${url.slice(0, from)}***${url.slice(at)}` : url;
  let parsed: URL;
  try {
    parsed = new URL(blanked);
  } catch {
    const q = blanked.indexOf("?");
    return q < 0 ? blanked : `${blanked.slice(0, q)}?***`;
  }
  // ioredis takes any query parameter as an option: `password`, `sentinelPassword`, …
  for (const name of [...parsed.searchParams.keys()]) {
    if (/pass/i.test(name)) parsed.searchParams.set(name, "***");
  }
  // URL keeps "***" as is in the user info; the query encodes it, undone for readability.
  return parsed.toString().replace(/=%2A%2A%2A/g, "=***");
}

/**
 * The Redis a process uses, for its one boot log line: `{redis: <REDIS_URL, password redacted>,
 * keyPrefix: <PI_FLEET_KEY_PREFIX>}`.
 */
export function redisTarget(env: { REDIS_URL: string; PI_FLEET_KEY_PREFIX: string }): {
  redis: string;
  keyPrefix: string;
} {
  return { redis: redactRedisUrl(env.REDIS_URL), keyPrefix: env.PI_FLEET_KEY_PREFIX };
}
