// The worker's side of fork / clone / new_session (apps/worker/src/session-files.ts) against a
// real Redis: a new session's record, history and `session_created` activity event are written
// only while the worker's lease token holds the project lease. An ex-owner that still believes it
// holds the lease (its local deadline not yet passed) writes nothing once another worker took over;
// the same holds for the session settings an owner records after a model command.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LeaseManager, type ProjectLease } from "@pi-fleet/leases";
import { createLogger } from "@pi-fleet/observability";
import { connectRedis, createKeys, type Redis } from "@pi-fleet/redis";
import { Registry } from "@pi-fleet/registry";
import { WorkspacePaths } from "@pi-fleet/security";
import { EventLog, SessionRecords } from "@pi-fleet/streams";
import { uniquePrefix } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { WorkerSessionFiles } from "../../apps/worker/src/session-files.ts";
import type { WorkerContext } from "../../apps/worker/src/worker-context.ts";
import { registerSession } from "./helpers/register-session.ts";

const keys = createKeys(uniquePrefix("worker-session-files"));
const ORG = "acme";
const PROJECT = "web";
let redis: Redis;
let root: string;
let registry: Registry;
let events: EventLog;
let ctx: WorkerContext;

beforeAll(async () => {
  redis = await connectRedis(inject("redisUrl"), "command", "test-worker-session-files");
  root = await mkdtemp(join(tmpdir(), "pf-wsf-"));
  registry = new Registry(redis, keys);
  events = new EventLog(redis, keys, 1000);
  ctx = {
    registry,
    events,
    sessions: new SessionRecords(events),
    paths: new WorkspacePaths(root),
    logger: createLogger("test", "silent"),
  } as unknown as WorkerContext;
  await registry.upsertProject(ORG, PROJECT, PROJECT);
  await registerSession(redis, keys, { org: ORG, project: PROJECT, session: "source" }, { name: "main" });
});

afterAll(async () => {
  await redis?.quit();
  await rm(root, { recursive: true, force: true });
});

const created = {
  origin: "fork" as const,
  messages: [{ role: "user", content: "hello", timestamp: 1 }],
  firstMessage: "hello",
};

/** The activity stream's events. */
async function activity(): Promise<{ type: string; sessionId?: string; name?: string }[]> {
  const entries = await events.range({ org: ORG, project: PROJECT, activity: true }, "0", 1000);
  return entries.map((e) => JSON.parse(e.data));
}

describe("WorkerSessionFiles", () => {
  it("stores any first message as given, a lone surrogate (an emoji cut in half) included", async () => {
    const a = await new LeaseManager(redis, keys, "worker-a", 10_000).acquire(ORG, PROJECT);
    if (!("lease" in a)) throw new Error("expected to acquire");
    try {
      const files = new WorkerSessionFiles(ctx, a.lease, "source");
      const slot = await files.allocate();
      // What `.slice(0, 200)` of a text with an emoji at 199 used to hand over.
      const cut = `${"a".repeat(199)}\u{1F600}`.slice(0, 200);
      await files.register(slot, { ...created, firstMessage: cut });
      expect((await registry.getSession(ORG, PROJECT, slot.sessionId))?.firstMessage).toBe(
        `${"a".repeat(199)}\uFFFD`,
      );
    } finally {
      await a.lease.release();
    }
  });

  it("registers a fork while the lease is held: record, history and session_created", async () => {
    const a = await new LeaseManager(redis, keys, "worker-a", 10_000).acquire(ORG, PROJECT);
    if (!("lease" in a)) throw new Error("expected to acquire");
    try {
      const files = new WorkerSessionFiles(ctx, a.lease, "source");
      const slot = await files.allocate();
      await files.register(slot, created);
      expect(await registry.getSession(ORG, PROJECT, slot.sessionId)).toMatchObject({
        name: "main (fork)",
        firstMessage: "hello",
      });
      expect(await registry.sessionMessages(ORG, PROJECT, slot.sessionId)).toEqual(created.messages);
      expect(await activity()).toContainEqual({
        type: "session_created",
        sessionId: slot.sessionId,
        name: "main (fork)",
      });
      // On the activity stream only: the new session's own stream stays empty.
      expect(await redis.exists(keys.stream(ORG, PROJECT, slot.sessionId))).toBe(0);
    } finally {
      await a.lease.release();
    }
  });

  it("an owner's settings write is fenced: refused for an ex-owner and for a deleted session", async () => {
    await registerSession(
      redis,
      keys,
      { org: ORG, project: PROJECT, session: "settings" },
      { modelId: "m1" },
    );
    const a = await new LeaseManager(redis, keys, "worker-a", 10_000).acquire(ORG, PROJECT);
    if (!("lease" in a)) throw new Error("expected to acquire");
    const stale = a.lease;
    expect(
      await registry.updateSessionSettings(ORG, PROJECT, "settings", { modelId: "m2" }, stale.token),
    ).toBe(true);
    await redis.del(keys.lease(ORG, PROJECT));
    const b = await new LeaseManager(redis, keys, "worker-b", 10_000).acquire(ORG, PROJECT);
    if (!("lease" in b)) throw new Error("expected takeover");
    try {
      expect(
        await registry.updateSessionSettings(ORG, PROJECT, "settings", { modelId: "stale" }, stale.token),
      ).toBe(false);
      expect((await registry.getSession(ORG, PROJECT, "settings"))?.modelId).toBe("m2");
      await new SessionRecords(events).delete(ORG, PROJECT, "settings");
      expect(
        await registry.updateSessionSettings(ORG, PROJECT, "settings", { modelId: "m3" }, b.lease.token),
      ).toBe(false);
      expect(await redis.exists(keys.session(ORG, PROJECT, "settings"))).toBe(0);
    } finally {
      await b.lease.release();
      await stale.release();
    }
  });

  it("an ex-owner whose lease moved registers nothing and appends no session_created", async () => {
    const a = await new LeaseManager(redis, keys, "worker-a", 10_000).acquire(ORG, PROJECT);
    if (!("lease" in a)) throw new Error("expected to acquire");
    const stale: ProjectLease = a.lease;
    const files = new WorkerSessionFiles(ctx, stale, "source");
    const slot = await files.allocate();
    // Worker A stalls; its lease expires in Redis and B takes over with a higher epoch, while A's
    // local deadline has not passed yet (A still believes it owns the project).
    await redis.del(keys.lease(ORG, PROJECT));
    const b = await new LeaseManager(redis, keys, "worker-b", 10_000).acquire(ORG, PROJECT);
    if (!("lease" in b)) throw new Error("expected takeover");
    try {
      expect(stale.held).toBe(true);
      const before = await activity();
      await expect(files.register(slot, created)).rejects.toThrow(/lease was lost/);
      expect(await registry.getSession(ORG, PROJECT, slot.sessionId)).toBeUndefined();
      expect(await registry.sessionMessages(ORG, PROJECT, slot.sessionId)).toEqual([]);
      expect(await redis.zscore(keys.sessions(ORG, PROJECT), slot.sessionId)).toBeNull();
      expect(await activity()).toEqual(before);
    } finally {
      await b.lease.release();
      await stale.release();
    }
  });

  it("registers nothing for a project deleted meanwhile: no record, history or event", async () => {
    const other = "gone";
    await registry.upsertProject(ORG, other, other);
    await registerSession(redis, keys, { org: ORG, project: other, session: "source" });
    const a = await new LeaseManager(redis, keys, "worker-a", 10_000).acquire(ORG, other);
    if (!("lease" in a)) throw new Error("expected to acquire");
    try {
      const files = new WorkerSessionFiles(ctx, a.lease, "source");
      const slot = await files.allocate();
      // The gateway deletes the project while the worker forks one of its sessions.
      await new SessionRecords(events).deleteProject(ORG, other, "deletion-1");
      await expect(files.register(slot, created)).rejects.toThrow(/project was deleted/);
      expect(await redis.exists(keys.session(ORG, other, slot.sessionId))).toBe(0);
      expect(await redis.exists(keys.messages(ORG, other, slot.sessionId))).toBe(0);
      expect(await redis.zscore(keys.sessions(ORG, other), slot.sessionId)).toBeNull();
      const entries = await new EventLog(redis, keys, 1000).range(
        { org: ORG, project: other, activity: true },
        "0",
        100,
      );
      expect(entries.map((e) => JSON.parse(e.data).sessionId)).not.toContain(slot.sessionId);
    } finally {
      await a.lease.release();
    }
  });
});
