// The session event log against a real Redis: fencing, exactly-one terminal state, idempotent
// enqueue, replay/merge without gap or duplicate under concurrent writes, gap repair when pub/sub
// loses an announcement, and explicit resets for trimmed or lost cursors.
import { LeaseManager } from "@pi-fleet/leases";
import { connectRedis, createKeys, type Redis } from "@pi-fleet/redis";
import { Registry } from "@pi-fleet/registry";
import {
  EventLog,
  FencedError,
  offsetBefore,
  type ResetReason,
  type SessionRef,
  type StreamEntry,
  StreamHub,
  StreamSubscription,
} from "@pi-fleet/streams";
import { uniquePrefix, waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { registerSession } from "./helpers/register-session.ts";

const keys = createKeys(uniquePrefix("event-log"));
let redis: Redis;
let sub: Redis;
let hub: StreamHub;
const ref = (session: string) => ({ org: "acme", project: "web", session });
/** `ref(session)` of a session that exists in the registry (appends refuse a deleted session). */
async function sessionRef(session: string) {
  await registerSession(redis, keys, ref(session));
  return ref(session);
}

/**
 * A subscription from the start of `r` whose replay pauses (the client's socket congested) once
 * `after` entries were delivered, until `release()`.
 */
function pausedReplay(log: EventLog, r: SessionRef, c: ReturnType<typeof collector>, after: number) {
  let release: () => void = () => {};
  let pausedNow: () => void = () => {};
  const paused = new Promise<void>((resolve) => {
    pausedNow = resolve;
  });
  const s = new StreamSubscription(log, hub, r, "0", {
    ...c.sink,
    congested: () =>
      c.entries.length === after
        ? new Promise<void>((resolve) => {
            release = resolve;
            pausedNow();
          })
        : undefined,
  });
  return { s, started: s.start(), paused, release: () => release() };
}

/** Collects what a subscription delivers. */
function collector() {
  const entries: StreamEntry[] = [];
  const resets: { reason: ResetReason; firstOffset: string }[] = [];
  const ends: string[] = [];
  return {
    entries,
    resets,
    ends,
    sink: {
      entry: (e: StreamEntry) => entries.push(e),
      reset: (reason: ResetReason, firstOffset: string) => resets.push({ reason, firstOffset }),
      failed: (err: unknown) => {
        throw err;
      },
      ended: (data: string) => ends.push(data),
    },
  };
}

beforeAll(async () => {
  const url = inject("redisUrl");
  redis = await connectRedis(url, "command", "test-event-log");
  sub = await connectRedis(url, "subscriber", "test-event-log-sub");
  hub = new StreamHub(sub);
  await new Registry(redis, keys).upsertProject("acme", "web", "Web");
});

afterAll(async () => {
  await hub.close();
  await redis.quit();
});

describe("fencing", () => {
  it("rejects appends and transitions from a holder whose lease moved, writing nothing", async () => {
    const log = new EventLog(redis, keys, 1000);
    await registerSession(redis, keys, ref("fenced"));
    const a = new LeaseManager(redis, keys, "worker-a", 300);
    const b = new LeaseManager(redis, keys, "worker-b", 300);
    const first = await a.acquire("acme", "web");
    if (!("lease" in first)) throw new Error("expected to acquire");
    expect("heldBy" in (await b.acquire("acme", "web"))).toBe(true);
    const { runId } = await log.enqueueRun(ref("fenced"), "run-1", { firstMessage: "x", promptChars: 1 });
    await log.transitionRun(ref("fenced"), runId, first.lease.token, ["queued"], "running", {
      type: "run_started",
    });
    const ids = await log.append(ref("fenced"), first.lease.token, [{ event: { type: "agent_start" } }]);
    expect(ids).toHaveLength(1);

    // Worker A stalls past its TTL (renewals stopped), B takes over with a higher epoch.
    await first.lease.release();
    const second = await b.acquire("acme", "web");
    if (!("lease" in second)) throw new Error("expected takeover");
    expect(second.lease.epoch).toBe(first.lease.epoch + 1);

    const before = await redis.xlen(keys.stream("acme", "web", "fenced"));
    await expect(
      log.append(ref("fenced"), first.lease.token, [{ event: { type: "message_update" } }]),
    ).rejects.toBeInstanceOf(FencedError);
    await expect(
      log.transitionRun(ref("fenced"), runId, first.lease.token, ["running"], "finished", {
        type: "run_finished",
      }),
    ).rejects.toBeInstanceOf(FencedError);
    expect(await redis.xlen(keys.stream("acme", "web", "fenced"))).toBe(before);
    expect((await log.getRun("acme", "web", runId))?.status).toBe("running");
    await second.lease.release();
  });

  it("reports a lease as lost when someone else holds it at renewal", async () => {
    const a = new LeaseManager(redis, keys, "worker-a", 600);
    const res = await a.acquire("acme", "lost");
    if (!("lease" in res)) throw new Error("expected to acquire");
    let lostReason: string | undefined;
    res.lease.onLost((reason) => {
      lostReason = reason;
    });
    await redis.set(keys.lease("acme", "lost"), "intruder:99", "PX", 5000);
    expect(await res.lease.renew()).toBe(false);
    expect(res.lease.held).toBe(false);
    expect(lostReason).toMatch(/taken over|expired/);
  });

  it("deletes a lease key still its own on release after a local loss, never as clean", async () => {
    const a = new LeaseManager(redis, keys, "worker-a", 600);
    const res = await a.acquire("acme", "late-renewal");
    if (!("lease" in res)) throw new Error("expected to acquire");
    const cleanBefore = await redis.get(keys.leaseClean("acme", "late-renewal"));
    // The local deadline passed (a stalled event loop) while a renewal was still applied in Redis.
    (res.lease as unknown as { markLost(reason: string): void }).markLost("lease deadline passed");
    await redis.pexpire(keys.lease("acme", "late-renewal"), 5000);
    expect(res.lease.held).toBe(false);
    await res.lease.release(true);
    // The next owner takes it at once instead of waiting out the TTL; the release is not clean.
    expect(await redis.exists(keys.lease("acme", "late-renewal"))).toBe(0);
    expect(await redis.get(keys.leaseClean("acme", "late-renewal"))).toBe(cleanBefore);
  });

  it("tells the next owner whether the previous ownership ended with a clean release", async () => {
    const a = new LeaseManager(redis, keys, "worker-a", 300);
    const b = new LeaseManager(redis, keys, "worker-b", 300);
    const take = async (m: LeaseManager) => {
      const res = await m.acquire("acme", "handoff");
      if (!("lease" in res)) throw new Error("expected to acquire");
      return res.lease;
    };
    // The first ownership ever has nothing before it.
    const first = await take(a);
    expect([first.epoch, first.previousClean]).toEqual([1, true]);
    await first.release(true);
    const second = await take(b);
    expect([second.epoch, second.previousClean]).toEqual([2, true]);
    // A release that left something behind (a run it could not record) is not clean …
    await second.release(false);
    const third = await take(a);
    expect([third.epoch, third.previousClean]).toEqual([3, false]);
    // … nor is a lease that expired (its owner died): the marker still names epoch 2, not 3.
    await redis.pexpire(keys.lease("acme", "handoff"), 1);
    await waitFor(async () => (await redis.exists(keys.lease("acme", "handoff"))) === 0, { timeoutMs: 2000 });
    const fourth = await take(b);
    expect([fourth.epoch, fourth.previousClean]).toEqual([4, false]);
    // A holder that lost its lease cannot mark its release clean: the compare-and-delete fails.
    await redis.set(keys.lease("acme", "handoff"), "intruder:99", "PX", 200);
    await fourth.release(true);
    expect(await redis.get(keys.leaseClean("acme", "handoff"))).toBe("1");
    await waitFor(async () => (await redis.exists(keys.lease("acme", "handoff"))) === 0, { timeoutMs: 2000 });
    expect((await take(a)).previousClean).toBe(false);
  });
});

describe("run transitions", () => {
  it("lets exactly one of two racing terminal transitions win", async () => {
    const log = new EventLog(redis, keys, 1000);
    await registerSession(redis, keys, ref("race"));
    for (let i = 0; i < 20; i++) {
      const { runId } = await log.enqueueRun(ref("race"), `race-${i}`, { firstMessage: "x", promptChars: 1 });
      await log.transitionRun(ref("race"), runId, "", ["queued"], "running", { type: "run_started" });
      const results = await Promise.all([
        log.transitionRun(ref("race"), runId, "", ["running"], "finished", { type: "run_finished", runId }),
        log.transitionRun(ref("race"), runId, "", ["running"], "interrupted", {
          type: "run_interrupted",
          runId,
        }),
      ]);
      expect(results.filter((r) => "offset" in r)).toHaveLength(1);
    }
    const entries = await log.range(ref("race"), "0", 1000);
    const terminal = entries
      .map((e) => JSON.parse(e.data) as { type: string })
      .filter((e) => ["run_finished", "run_interrupted"].includes(e.type));
    expect(terminal).toHaveLength(20);
    expect(await log.openRuns(ref("race"))).toEqual([]);
  });

  it("maps one idempotency digest to one run", async () => {
    const log = new EventLog(redis, keys, 1000);
    await registerSession(redis, keys, ref("idem"));
    const results = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        log.enqueueRun(ref("idem"), `idem-${i}`, {
          idempotencyDigest: "d1",
          firstMessage: "x",
          promptChars: 1,
        }),
      ),
    );
    expect(new Set(results.map((r) => r.runId)).size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(await log.openRuns(ref("idem"))).toHaveLength(1);
  });

  it("starts a run only below its org's quota, taking the slot in the same call", async () => {
    const log = new EventLog(redis, keys, 1000);
    const res = await new LeaseManager(redis, keys, "worker-q", 2000).acquire("acme", "web");
    if (!("lease" in res)) throw new Error("expected to acquire");
    const token = res.lease.token;
    const quota = { capacity: 1, holderTtlMs: 60_000 };
    const slots = keys.orgRunning("acme");
    await redis.del(slots);
    const runs: string[] = [];
    for (const s of ["quota-a", "quota-b"]) {
      await registerSession(redis, keys, ref(s));
      runs.push((await log.enqueueRun(ref(s), `${s}-1`, { firstMessage: "x", promptChars: 1 })).runId);
    }
    const started = { type: "run_started" };
    expect("offset" in (await log.startRun(ref("quota-a"), runs[0]!, token, started, {}, quota))).toBe(true);
    const before = await redis.xlen(keys.stream("acme", "web", "quota-b"));
    // At the quota: nothing written, the run stays queued, no slot taken.
    expect(await log.startRun(ref("quota-b"), runs[1]!, token, started, {}, quota)).toEqual({
      throttled: true,
    });
    expect(await redis.xlen(keys.stream("acme", "web", "quota-b"))).toBe(before);
    expect((await log.getRun("acme", "web", runs[1]!))?.status).toBe("queued");
    expect(await redis.zrange(slots, "0", "-1")).toEqual([runs[0]]);
    // A holder that was not refreshed expires and frees its slot.
    await redis.zadd(slots, Date.now() - 1, runs[0]!);
    expect("offset" in (await log.startRun(ref("quota-b"), runs[1]!, token, started, {}, quota))).toBe(true);
    expect(await redis.zrange(slots, "0", "-1")).toEqual([runs[1]]);
    await res.lease.release();
  });
});

describe("StreamSubscription", () => {
  it("replays then goes live with no gap and no duplicate while writes race the replay", async () => {
    const log = new EventLog(redis, keys, 100_000);
    const r = await sessionRef("merge");
    for (let i = 0; i < 600; i++) await log.append(r, "", [{ event: { type: "n", i } }]);
    const c = collector();
    const writer = (async () => {
      for (let i = 600; i < 1500; i += 10) {
        await log.append(
          r,
          "",
          Array.from({ length: 10 }, (_, k) => ({ event: { type: "n", i: i + k } })),
        );
      }
    })();
    const subscription = new StreamSubscription(log, hub, r, "0", c.sink);
    await subscription.start();
    await writer;
    await waitFor(() => c.entries.length >= 1500, { timeoutMs: 10_000 });
    await subscription.close();
    const all = await log.range(r, "0", 10_000);
    expect(c.entries.map((e) => e.id)).toEqual(all.map((e) => e.id));
    expect(c.entries.map((e) => (JSON.parse(e.data) as { i: number }).i)).toEqual(
      Array.from({ length: 1500 }, (_, i) => i),
    );
  });

  it("repairs from the stream when an announcement was lost", async () => {
    const log = new EventLog(redis, keys, 1000);
    const r = await sessionRef("gap");
    await log.append(r, "", [{ event: { type: "first" } }]);
    const c = collector();
    const subscription = new StreamSubscription(log, hub, r, undefined, c.sink);
    await subscription.start();
    // An entry written without its announcement (as if pub/sub dropped it) …
    const streamKey = keys.stream("acme", "web", "gap");
    const silent = await redis.xadd(streamKey, "*", "d", JSON.stringify({ type: "silent" }));
    await redis.hset(keys.streamMeta("acme", "web", "gap"), "last", silent ?? "");
    // … is recovered when the next announcement names it as predecessor.
    await log.append(r, "", [{ event: { type: "after" } }]);
    await waitFor(() => c.entries.length >= 2, { timeoutMs: 5000 });
    await subscription.close();
    expect(c.entries.map((e) => (JSON.parse(e.data) as { type: string }).type)).toEqual(["silent", "after"]);
  });

  it("sends stream_reset for a trimmed cursor, then the retained entries", async () => {
    const log = new EventLog(redis, keys, 100);
    const r = await sessionRef("trim");
    const first = await log.append(r, "", [{ event: { type: "n", i: 0 } }]);
    for (let i = 1; i < 1000; i += 50) {
      await log.append(
        r,
        "",
        Array.from({ length: 50 }, (_, k) => ({ event: { type: "n", i: i + k } })),
      );
    }
    const c = collector();
    const subscription = new StreamSubscription(log, hub, r, first[0], c.sink);
    await subscription.start();
    await subscription.close();
    const retained = await log.range(r, "0", 10_000);
    expect(retained.length).toBeLessThan(1000);
    expect(c.resets).toEqual([{ reason: "trimmed", firstOffset: retained[0]?.id }]);
    expect(c.entries.map((e) => e.id)).toEqual(retained.map((e) => e.id));
  });

  it("sends stream_reset lost for a cursor ahead of the stream, and none for a current one", async () => {
    const log = new EventLog(redis, keys, 1000);
    const r = await sessionRef("ahead");
    const [id] = await log.append(r, "", [{ event: { type: "only" } }]);
    const ahead = collector();
    const s1 = new StreamSubscription(log, hub, r, "99999999999999-0", ahead.sink);
    await s1.start();
    await s1.close();
    expect(ahead.resets.map((x) => x.reason)).toEqual(["lost"]);
    expect(ahead.entries).toHaveLength(1);
    const current = collector();
    const s2 = new StreamSubscription(log, hub, r, id, current.sink);
    await s2.start();
    await s2.close();
    expect(current.resets).toEqual([]);
    expect(current.entries).toEqual([]);
  });

  it("sends stream_reset lost when the stream was lost and recreated behind a resuming client", async () => {
    const log = new EventLog(redis, keys, 1000);
    const r = await sessionRef("recreated");
    const old = await log.append(r, "", [{ event: { type: "old", i: 0 } }, { event: { type: "old", i: 1 } }]);
    // Redis loses the data (no AOF, failover to a stale replica); new events arrive later.
    await redis.del(keys.stream("acme", "web", "recreated"), keys.streamMeta("acme", "web", "recreated"));
    await new Promise((resolve) => setTimeout(resolve, 5)); // a restart takes longer than a millisecond
    await log.append(r, "", [{ event: { type: "new", i: 0 } }]);
    await log.append(r, "", [{ event: { type: "new", i: 1 } }]);
    const c = collector();
    const s = new StreamSubscription(log, hub, r, old[0], c.sink);
    await s.start();
    await s.close();
    expect(c.resets.map((x) => x.reason)).toEqual(["lost"]);
    expect(c.entries.map((e) => (JSON.parse(e.data) as { type: string }).type)).toEqual(["new", "new"]);
  });

  it("drops the rest of a replay page when the stream is lost while the client drains it", async () => {
    // Entries of the lost stream used to follow the reset (the client takes them as new).
    const log = new EventLog(redis, keys, 100_000);
    const r = await sessionRef("lost-mid-page");
    for (let i = 0; i < 120; i++) await log.append(r, "", [{ event: { type: "old", i } }]);
    const c = collector();
    const { s, started, paused, release } = pausedReplay(log, r, c, 10);
    await paused;
    await redis.del(
      keys.stream("acme", "web", "lost-mid-page"),
      keys.streamMeta("acme", "web", "lost-mid-page"),
    );
    await log.append(r, "", [{ event: { type: "new", i: 0 } }]);
    await waitFor(() => c.resets.length > 0, {
      message: "the live entry of the new stream told of the loss",
    });
    release();
    await started;
    await waitFor(() => c.entries.some((e) => (JSON.parse(e.data) as { type: string }).type === "new"));
    await s.close();
    const types = c.entries.map((e) => (JSON.parse(e.data) as { type: string }).type);
    expect(types.slice(0, 10)).toEqual(Array(10).fill("old"));
    expect(types.slice(10)).toEqual(["new"]);
  });

  it("holds at most a bounded number of live bytes while a replay is paused", async () => {
    const log = new EventLog(redis, keys, 100_000);
    const r = await sessionRef("big-live");
    await log.append(r, "", [{ event: { type: "first" } }]);
    const c = collector();
    const { s, started, paused, release } = pausedReplay(log, r, c, 1);
    await paused;
    // 200 live entries of 50 KB (10 MB) while the replay waits for the client.
    let announced = 0;
    let peak = 0;
    const onEntry = s.onEntry.bind(s);
    s.onEntry = (...args) => {
      onEntry(...args);
      announced++;
      peak = Math.max(peak, (s as unknown as { bufferedBytes: number }).bufferedBytes);
    };
    const text = "x".repeat(50_000);
    for (let i = 0; i < 200; i++) await log.append(r, "", [{ event: { type: "big", i, text } }]);
    await waitFor(() => announced === 200, { message: `${announced} of 200 announcements` });
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(4 * 1024 * 1024);
    release();
    await started;
    // Nothing was lost: what was dropped from the buffer is read from the stream.
    await waitFor(() => c.entries.length === 201, {
      timeoutMs: 10_000,
      message: `${c.entries.length} of 201`,
    });
    await s.close();
    expect(c.resets).toEqual([]);
  });

  it("reads the stream again when a buffered live entry does not follow the replay", async () => {
    // An announcement lost while the last replay page was read (a pub/sub reconnect): the next
    // buffered entry's predecessor is not what was sent last. It used to be delivered anyway,
    // and the lost entry was never repaired.
    let gate: Promise<void> | undefined;
    let reading: () => void = () => {};
    const inRead = new Promise<void>((resolve) => {
      reading = resolve;
    });
    class GatedLog extends EventLog {
      override async readPage(...args: Parameters<EventLog["readPage"]>): ReturnType<EventLog["readPage"]> {
        const page = await super.readPage(...args);
        if (gate) {
          reading();
          await gate;
        }
        return page;
      }
    }
    const log = new GatedLog(redis, keys, 100_000);
    const r = await sessionRef("lost-announcement");
    await log.append(r, "", [{ event: { type: "a" } }]);
    const c = collector();
    let open: () => void = () => {};
    gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const s = new StreamSubscription(log, hub, r, "0", c.sink);
    const started = s.start();
    await inRead;
    // Two entries arrive while the page (holding only "a") is on its way; "b"'s announcement is lost.
    await log.append(r, "", [{ event: { type: "b" } }]);
    await log.append(r, "", [{ event: { type: "c" } }]);
    const buffer = (s as unknown as { buffer: { data: string }[] }).buffer;
    await waitFor(() => buffer.length === 2);
    buffer.splice(0, 1);
    gate = undefined;
    open();
    await started;
    await s.close();
    expect(c.entries.map((e) => (JSON.parse(e.data) as { type: string }).type)).toEqual(["a", "b", "c"]);
  });

  it("tells a live subscriber when the stream is lost under it", async () => {
    const log = new EventLog(redis, keys, 1000);
    const r = await sessionRef("lost-live");
    await log.append(r, "", [{ event: { type: "a" } }, { event: { type: "b" } }]);
    const c = collector();
    const s = new StreamSubscription(log, hub, r, "0", c.sink);
    await s.start();
    await redis.del(keys.stream("acme", "web", "lost-live"), keys.streamMeta("acme", "web", "lost-live"));
    await log.append(r, "", [{ event: { type: "c" } }]);
    await waitFor(() => c.entries.length >= 3, { timeoutMs: 5000 });
    await s.close();
    expect(c.resets.map((x) => x.reason)).toEqual(["lost"]);
    expect(c.entries.map((e) => (JSON.parse(e.data) as { type: string }).type)).toEqual(["a", "b", "c"]);
  });

  it("accepts the synthetic offset just before an entry in the middle of the stream (a later run's prompt offset)", async () => {
    const log = new EventLog(redis, keys, 1000);
    const r = await sessionRef("synthetic-middle");
    await log.append(r, "", [{ event: { type: "a" } }, { event: { type: "b" } }]);
    const [c] = await log.append(r, "", [{ event: { type: "c" } }]);
    await log.append(r, "", [{ event: { type: "d" } }]);
    const got = collector();
    const s = new StreamSubscription(log, hub, r, offsetBefore(c!), got.sink);
    await s.start();
    await s.close();
    expect(got.resets).toEqual([]);
    expect(got.entries.map((e) => (JSON.parse(e.data) as { type: string }).type)).toEqual(["c", "d"]);
  });

  it("accepts the synthetic offset just before an entry without a reset", async () => {
    const log = new EventLog(redis, keys, 1000);
    const r = await sessionRef("synthetic");
    const [a] = await log.append(r, "", [{ event: { type: "a" } }]);
    await log.append(r, "", [{ event: { type: "b" } }]);
    const c = collector();
    const s = new StreamSubscription(log, hub, r, offsetBefore(a!), c.sink);
    await s.start();
    await s.close();
    expect(c.resets).toEqual([]);
    expect(c.entries.map((e) => (JSON.parse(e.data) as { type: string }).type)).toEqual(["a", "b"]);
  });

  it("trims entries older than the age limit on the next append", async () => {
    const log = new EventLog(redis, keys, 100_000, 50);
    const r = await sessionRef("aged");
    await log.append(r, "", [{ event: { type: "old" } }]);
    await new Promise((resolve) => setTimeout(resolve, 120));
    await log.append(r, "", [{ event: { type: "new" } }]);
    const retained = await log.range(r, "0", 1000);
    expect(retained.some((e) => e.data.includes('"old"'))).toBe(false);
    expect((await log.bounds(r)).trimmed).toBe(true);
  });
});
