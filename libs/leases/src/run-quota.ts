/**
 * A per-org cap on concurrent runs across the whole fleet (`PI_FLEET_ORG_MAX_RUNS`): a counting
 * semaphore in Redis (`Keys.orgRunning`, a ZSET of run id -> expiry in ms) whose holders expire
 * unless their worker refreshes them, so a worker that dies cannot leak slots for longer than the
 * holder TTL. A slot is taken by the script that starts the run (libs/streams start-run.lua, with
 * {@link RunQuota.terms}), so the check costs no round trip of its own; this class then refreshes
 * the slot while the run lasts and gives it back when the run ends. A run that finds the quota
 * full is deferred and retried, so one org's flood of prompts waits in its own queues instead of
 * occupying every worker.
 */
import type { Keys, Redis } from "@pi-fleet/redis";

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

  /** @param capacity concurrent runs per org; 0 = unlimited (no slot is taken or held) */
  constructor(redis: Redis, keys: Keys, capacity: number) {
    this.#redis = redis;
    this.#keys = keys;
    this.#capacity = capacity;
    this.#timer = setInterval(() => void this.#refresh(), QUOTA_HOLDER_TTL_MS / 3);
    this.#timer.unref();
  }

  /** What the start-run script needs to take a slot: the cap (0 = none) and the holder TTL (ms). */
  get terms(): { capacity: number; holderTtlMs: number } {
    return { capacity: this.#capacity, holderTtlMs: QUOTA_HOLDER_TTL_MS };
  }

  /** Records the slot of `org` that the start-run script took for `runId`: refreshed until released. */
  adopt(org: string, runId: string): void {
    if (this.#capacity > 0) this.#held.set(runId, org);
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
