/**
 * A per-org cap on concurrent runs across the whole fleet (`PI_FLEET_ORG_MAX_RUNS`): a counting
 * semaphore in Redis whose holders (run ids) expire unless their worker refreshes them, so a worker
 * that dies cannot leak slots for longer than the holder TTL. The owner takes a slot just before it
 * starts a run and gives it back when the run ends; a run that finds the quota full is deferred and
 * retried, so one org's flood of prompts waits in its own queues instead of occupying every worker.
 */
import { type Keys, LuaScript, type Redis } from "@pi-fleet/redis";

const LUA_DIR = new URL("../lua/", import.meta.url);
const ACQUIRE = LuaScript.fromFile(LUA_DIR, "quota-acquire", 1);

/** How long a holder counts without a refresh (ms); holders are refreshed every third of it. */
export const QUOTA_HOLDER_TTL_MS = 30_000;

/** Concurrent-run slots per org. */
export class RunQuota {
  readonly #redis: Redis;
  readonly #keys: Keys;
  readonly #capacity: number;
  /** Slots this process holds: `org` by run id, refreshed on a timer. */
  readonly #held = new Map<string, string>();
  readonly #timer: NodeJS.Timeout;

  /** @param capacity concurrent runs per org; 0 = unlimited (acquire always succeeds, no Redis) */
  constructor(redis: Redis, keys: Keys, capacity: number) {
    this.#redis = redis;
    this.#keys = keys;
    this.#capacity = capacity;
    this.#timer = setInterval(() => void this.#refresh(), QUOTA_HOLDER_TTL_MS / 3);
    this.#timer.unref();
  }

  /**
   * Takes a slot of `org` for `runId`. Resolves false when the org already runs `capacity` runs.
   * @throws the Redis error when Redis is unreachable
   */
  async acquire(org: string, runId: string): Promise<boolean> {
    if (this.#capacity === 0) return true;
    const ok = await ACQUIRE.run(
      this.#redis,
      [this.#keys.orgRunning(org)],
      [runId, Date.now(), QUOTA_HOLDER_TTL_MS, this.#capacity],
    );
    if (ok === 1) this.#held.set(runId, org);
    return ok === 1;
  }

  /** Gives the slot of `runId` back (no-op when not held). Never throws. */
  async release(runId: string): Promise<void> {
    const org = this.#held.get(runId);
    if (org === undefined) return;
    this.#held.delete(runId);
    await this.#redis.zrem(this.#keys.orgRunning(org), runId).catch(() => undefined);
  }

  /** Stops refreshing (held slots then expire within the TTL unless released). */
  close(): void {
    clearInterval(this.#timer);
  }

  async #refresh(): Promise<void> {
    const expiry = Date.now() + QUOTA_HOLDER_TTL_MS;
    for (const [runId, org] of this.#held) {
      // XX: a holder that was released meanwhile is not re-added.
      await this.#redis.zadd(this.#keys.orgRunning(org), "XX", String(expiry), runId).catch(() => undefined);
    }
  }
}
