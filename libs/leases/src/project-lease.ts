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
const ACQUIRE = LuaScript.fromFile(luaDir, "acquire", 2);
const RENEW = LuaScript.fromFile(luaDir, "renew", 1);
const RELEASE = LuaScript.fromFile(luaDir, "release", 1);

/** Why a lease ended. */
export type LeaseEnd = "released" | "lost";

/** A held project lease. */
export class ProjectLease {
  readonly org: string;
  readonly project: string;
  readonly token: string;
  readonly epoch: number;
  private readonly redis: Redis;
  private readonly key: string;
  private readonly ttlMs: number;
  private deadline: number;
  private timer: NodeJS.Timeout | undefined;
  private ended: LeaseEnd | undefined;
  private readonly lostHandlers: ((reason: string) => void)[] = [];

  constructor(
    redis: Redis,
    key: string,
    org: string,
    project: string,
    token: string,
    epoch: number,
    ttlMs: number,
  ) {
    this.redis = redis;
    this.key = key;
    this.org = org;
    this.project = project;
    this.token = token;
    this.epoch = epoch;
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

  /** Gives the lease up (compare-and-delete). Safe to call more than once. */
  async release(): Promise<void> {
    if (this.ended) return;
    this.ended = "released";
    clearInterval(this.timer);
    await RELEASE.run(this.redis, [this.key], [this.token]).catch(() => {});
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
    const key = this.keys.lease(org, project);
    const res = (await ACQUIRE.run(
      this.redis,
      [key, this.keys.epoch(org, project)],
      [this.workerId, this.ttlMs],
    )) as [number, string, number];
    if (res[0] === 1) {
      return { lease: new ProjectLease(this.redis, key, org, project, res[1], Number(res[2]), this.ttlMs) };
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
