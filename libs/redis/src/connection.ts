/**
 * ioredis connection factory. Roles differ in failure semantics (queues-and-streams.md §2):
 * - `command`: fails fast while Redis is down (no offline queue) so requests answer 503;
 * - `bullmq` / `subscriber`: retry forever (`maxRetriesPerRequest: null`), as BullMQ requires for
 *   blocking commands and as a pub/sub connection needs to survive a blip.
 * All roles reconnect by themselves with capped backoff.
 */

import type { RedisOptions } from "ioredis";
import { Redis } from "ioredis";

export type { Redis } from "ioredis";

/** What the connection is used for; see the module comment. */
export type RedisRole = "command" | "bullmq" | "subscriber";

/** ioredis options for a role. `name` shows in `CLIENT LIST`. */
export function redisOptions(role: RedisRole, name: string): RedisOptions {
  const base: RedisOptions = {
    connectionName: name,
    lazyConnect: true,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    connectTimeout: 5000,
  };
  if (role === "command") return { ...base, enableOfflineQueue: true, maxRetriesPerRequest: 2 };
  return { ...base, maxRetriesPerRequest: null, enableReadyCheck: true };
}

/**
 * Opens a connection to `url` and waits until it is ready.
 * @throws the connection error when Redis cannot be reached within `connectTimeout`.
 */
export async function connectRedis(url: string, role: RedisRole, name: string): Promise<Redis> {
  const redis = new Redis(url, redisOptions(role, name));
  // Errors are also surfaced as rejected commands; without a listener ioredis prints them.
  redis.on("error", () => {});
  await redis.connect();
  return redis;
}

/** Returns true when `url` answers PING within `timeoutMs`. Never throws. */
export async function pingRedis(url: string, timeoutMs = 500): Promise<boolean> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  redis.on("error", () => {});
  try {
    await redis.connect();
    return (await redis.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}
