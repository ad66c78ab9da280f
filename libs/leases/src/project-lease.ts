/**
 * Project leases: at most one owner per project at any instant, each ownership with an epoch
 * that only grows (ARCHITECTURE.md principles 2–3, queues-and-streams.md §3.1). The token
 * `<workerId>:<epoch>` is what fenced writes check. A held lease renews itself every TTL/3; the
 * holder treats it as lost on a failed renewal or once its local deadline (last confirmed renewal
 * + TTL − margin, on the monotonic clock) passes — before another worker can take it over.
 */
import type { Keys, Redis } from "@pi-fleet/redis";
import { LuaScript } from "@pi-fleet/redis";

const luaDir = new URL("../lua/", import.meta.url);
const ACQUIRE = LuaScript.fromFile(luaDir, "acquire", 3);
const RENEW = LuaScript.fromFile(luaDir, "renew", 1);
const RELEASE = LuaScript.fromFile(luaDir, "release", 2);

/** Why a lease ended. */
export type LeaseEnd = "released" | "lost";

/** A held project lease. */
export class ProjectLease {
  readonly org: string;
  readonly project: string;
  readonly token: string;
  readonly epoch: number;
  /**
   * True when the ownership before this one ended with a clean release (its owner left no run
   * running and no job fetched), or there was none: nothing of an earlier owner needs reconciling.
   */
  readonly previousClean: boolean;
  private readonly redis: Redis;
  private readonly key: string;
  private readonly cleanKey: string;
  private readonly ttlMs: number;
  private deadline: number;
  private timer: NodeJS.Timeout | undefined;
  private ended: LeaseEnd | undefined;
  /** release() ran (once is enough: compare-and-delete). */
  private releaseSent = false;
  private readonly lostHandlers: ((reason: string) => void)[] = [];

  constructor(
    redis: Redis,
    keys: { lease: string; clean: string },
    org: string,
    project: string,
    grant: { token: string; epoch: number; previousClean: boolean },
    ttlMs: number,
  ) {
    this.redis = redis;
    this.key = keys.lease;
    this.cleanKey = keys.clean;
    this.org = org;
    this.project = project;
    this.token = grant.token;
    this.epoch = grant.epoch;
    this.previousClean = grant.previousClean;
    this.ttlMs = ttlMs;
    this.deadline = performance.now() + ttlMs - margin(ttlMs);
    this.timer = setInterval(() => void this.renew(), Math.max(50, Math.floor(ttlMs / 3)));
    this.timer.unref();
  }

  /** True while the lease is held and its local deadline has not passed. */
  get held(): boolean {
    if (this.ended) return false;
    if (performance.now() > this.deadline) {
      this.markLost("lease deadline passed without renewal");
      return false;
    }
    return true;
  }

  /** Registers `fn` to run once if the lease is lost (never on a voluntary release). */
  onLost(fn: (reason: string) => void): void {
    this.lostHandlers.push(fn);
  }

  /** Renews now. Returns whether the lease is still held. */
  async renew(): Promise<boolean> {
    if (this.ended) return false;
    const started = performance.now();
    try {
      const ok = (await RENEW.run(this.redis, [this.key], [this.token, this.ttlMs])) === 1;
      if (!ok) {
        this.markLost("lease taken over or expired");
        return false;
      }
      this.deadline = started + this.ttlMs - margin(this.ttlMs);
      return true;
    } catch {
      // Redis unreachable: keep the lease until the local deadline, then give it up.
      return this.held;
    }
  }

  /**
   * Gives the lease up (compare-and-delete). Safe to call more than once. After a loss it still
   * deletes the key if it is still this lease's (a renewal Redis applied after the local deadline
   * passed): the next owner need not wait for the TTL. Such a release is never clean.
   * @param clean true when this owner leaves nothing behind (no run running, no job fetched): the
   *   next owner then skips reconciling (see {@link previousClean}). Pass it only when sure.
   */
  async release(clean = false): Promise<void> {
    if (this.releaseSent) return;
    this.releaseSent = true;
    const lost = this.ended === "lost";
    this.ended ??= "released";
    clearInterval(this.timer);
    await RELEASE.run(
      this.redis,
      [this.key, this.cleanKey],
      [this.token, clean && !lost ? this.epoch : ""],
    ).catch(() => {});
  }

  private markLost(reason: string): void {
    if (this.ended) return;
    this.ended = "lost";
    clearInterval(this.timer);
    for (const fn of this.lostHandlers) {
      try {
        fn(reason);
      } catch {
        // handlers must not break the others
      }
    }
  }
}

function margin(ttlMs: number): number {
  return Math.min(1000, Math.floor(ttlMs / 5));
}

/** Outcome of an acquisition attempt. */
export type AcquireResult = { lease: ProjectLease } | { heldBy: string; pttlMs: number };

/** Acquires project leases for one worker. */
export class LeaseManager {
  private readonly redis: Redis;
  private readonly keys: Keys;
  readonly workerId: string;
  readonly ttlMs: number;

  /** @param ttlMs lease TTL (`PI_FLEET_LEASE_TTL_MS`) */
  constructor(redis: Redis, keys: Keys, workerId: string, ttlMs: number) {
    this.redis = redis;
    this.keys = keys;
    this.workerId = workerId;
    this.ttlMs = ttlMs;
  }

  /** Tries once to take the project's lease. */
  async acquire(org: string, project: string): Promise<AcquireResult> {
    const keys = { lease: this.keys.lease(org, project), clean: this.keys.leaseClean(org, project) };
    const res = (await ACQUIRE.run(
      this.redis,
      [keys.lease, this.keys.epoch(org, project), keys.clean],
      [this.workerId, this.ttlMs],
    )) as [number, string, number, number?];
    if (res[0] === 1) {
      const grant = { token: res[1], epoch: Number(res[2]), previousClean: res[3] === 1 };
      return { lease: new ProjectLease(this.redis, keys, org, project, grant, this.ttlMs) };
    }
    return { heldBy: res[1], pttlMs: Number(res[2]) };
  }

  /** The current holder's token of a project lease, if any (for routing control messages). */
  async holder(org: string, project: string): Promise<string | undefined> {
    return (await this.redis.get(this.keys.lease(org, project))) ?? undefined;
  }
}

/** Splits a lease token `<workerId>:<epoch>`. */
export function parseLeaseToken(token: string): { workerId: string; epoch: number } {
  const i = token.lastIndexOf(":");
  return { workerId: token.slice(0, i), epoch: Number(token.slice(i + 1)) };
}
