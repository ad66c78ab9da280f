// Session creation and deletion against a real Redis (libs/streams session-records.ts): a
// session's record and its `session_created` / `session_deleted` activity event are written by one
// script, so they exist together or not at all — also when the project is deleted meanwhile, when
// the writer's lease moved, when two deletes race, and when the event cannot be appended (through
// the gateway: a failed create leaves no session listed, a failed delete leaves the session).
import { LeaseManager } from "@pi-fleet/leases";
import { connectRedis, createKeys, type Redis } from "@pi-fleet/redis";
import { Registry } from "@pi-fleet/registry";
import { EventLog, FencedError, MissingRecordError, SessionRecords } from "@pi-fleet/streams";
import { uniquePrefix } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const keys = createKeys(uniquePrefix("session-records"));
const ORG = "acme";
let redis: Redis;
let registry: Registry;
let log: EventLog;
let sessions: SessionRecords;

beforeAll(async () => {
  redis = await connectRedis(inject("redisUrl"), "command", "test-session-records");
  registry = new Registry(redis, keys);
  log = new EventLog(redis, keys, 1000);
  sessions = new SessionRecords(log);
});

afterAll(async () => {
  await redis?.quit();
});

/** The project's activity events, oldest first. */
async function activity(project: string): Promise<{ type: string; sessionId?: string; name?: string }[]> {
  const entries = await log.range({ org: ORG, project, activity: true }, "0", 1000);
  return entries.map((e) => JSON.parse(e.data));
}

/** Whether anything of session `id` is registered: record, index entry or history. */
async function traces(project: string, id: string): Promise<number> {
  const [record, history, indexed] = await Promise.all([
    redis.exists(keys.session(ORG, project, id)),
    redis.exists(keys.messages(ORG, project, id)),
    redis.zscore(keys.sessions(ORG, project), id),
  ]);
  return record + history + (indexed === null ? 0 : 1);
}

describe("SessionRecords", () => {
  it("creates the record, its history and one session_created together", async () => {
    await registry.upsertProject(ORG, "p1", "p1");
    const history = [{ role: "user", content: "hi", timestamp: 1 }];
    const { createdAt, offset } = await sessions.create(
      ORG,
      "p1",
      "s1",
      { name: "main", modelId: "m", firstMessage: "hi" },
      history,
    );
    expect(await registry.getSession(ORG, "p1", "s1")).toMatchObject({
      id: "s1",
      createdAt,
      name: "main",
      modelId: "m",
      firstMessage: "hi",
    });
    expect(await registry.sessionMessages(ORG, "p1", "s1")).toEqual(history);
    expect((await registry.listSessions(ORG, "p1")).map((s) => s.id)).toEqual(["s1"]);
    const entries = await log.range({ org: ORG, project: "p1", activity: true }, "0", 10);
    expect(entries).toEqual([
      { id: offset, data: JSON.stringify({ type: "session_created", sessionId: "s1", name: "main" }) },
    ]);
  });

  it("writes nothing for a project that does not exist", async () => {
    await expect(sessions.create(ORG, "missing", "s1", { name: "x" })).rejects.toBeInstanceOf(
      MissingRecordError,
    );
    expect(await traces("missing", "s1")).toBe(0);
    expect(await activity("missing")).toEqual([]);
  });

  it("writes nothing for a lease token that no longer holds the lease", async () => {
    await registry.upsertProject(ORG, "p2", "p2");
    const first = await new LeaseManager(redis, keys, "worker-a", 10_000).acquire(ORG, "p2");
    if (!("lease" in first)) throw new Error("expected to acquire");
    await redis.del(keys.lease(ORG, "p2"));
    const second = await new LeaseManager(redis, keys, "worker-b", 10_000).acquire(ORG, "p2");
    if (!("lease" in second)) throw new Error("expected takeover");
    try {
      await expect(
        sessions.create(ORG, "p2", "stale", {}, [{ role: "user" }], first.lease.token),
      ).rejects.toBeInstanceOf(FencedError);
      expect(await traces("p2", "stale")).toBe(0);
      await sessions.create(ORG, "p2", "current", {}, [], second.lease.token);
      expect((await activity("p2")).map((e) => e.sessionId)).toEqual(["current"]);
    } finally {
      await second.lease.release();
      await first.lease.release();
    }
  });

  it("a settings write racing a deletion leaves no hash; a stray one is no session and goes with a delete", async () => {
    await registry.upsertProject(ORG, "stray", "stray");
    await sessions.create(ORG, "stray", "s1", {});
    await sessions.delete(ORG, "stray", "s1");
    // A PATCH …/settings (unfenced) or an owner's model change (fenced) that looked the session up
    // before the deletion writes nothing now.
    expect(await registry.updateSessionSettings(ORG, "stray", "s1", { thinkingLevel: "high" })).toBe(false);
    expect(await redis.exists(keys.session(ORG, "stray", "s1"))).toBe(0);
    // A stray hash without the record's createdAt (as older gateways' unfenced writes left) is no
    // session: a prompt is refused and writes nothing; a delete removes it.
    await redis.hset(keys.session(ORG, "stray", "s1"), "thinkingLevel", "high");
    await expect(
      log.enqueueRun({ org: ORG, project: "stray", session: "s1" }, "r1", {
        firstMessage: "x",
        promptChars: 1,
      }),
    ).rejects.toBeInstanceOf(MissingRecordError);
    expect(await redis.exists(keys.run(ORG, "stray", "r1"), keys.stream(ORG, "stray", "s1"))).toBe(0);
    expect(await redis.zcard(keys.projectOpenRuns(ORG, "stray"))).toBe(0);
    expect(await sessions.delete(ORG, "stray", "s1")).toBe(false);
    expect(await redis.exists(keys.session(ORG, "stray", "s1"))).toBe(0);
    // The deletion's data purge (gateway, then the maintenance job) removes one too.
    await redis.hset(keys.session(ORG, "stray", "s1"), "activeRun", "r0");
    await log.deleteSessionData({ org: ORG, project: "stray", session: "s1" });
    expect(await redis.exists(keys.session(ORG, "stray", "s1"))).toBe(0);
  });

  it("deletes the record with one session_deleted, also when two deletes race", async () => {
    await registry.upsertProject(ORG, "p3", "p3");
    await sessions.create(ORG, "p3", "s1", {});
    const results = await Promise.all([sessions.delete(ORG, "p3", "s1"), sessions.delete(ORG, "p3", "s1")]);
    expect(results.sort()).toEqual([false, true]);
    expect(await traces("p3", "s1")).toBe(0);
    expect(await activity("p3")).toEqual([
      { type: "session_created", sessionId: "s1" },
      { type: "session_deleted", sessionId: "s1" },
    ]);
    expect(await sessions.delete(ORG, "p3", "never")).toBe(false);
    expect(await activity("p3")).toHaveLength(2);
  });

  it("deletes the session of a project being deleted without recreating its activity stream", async () => {
    await registry.upsertProject(ORG, "p4", "p4");
    await sessions.create(ORG, "p4", "s1", {});
    await redis.del(keys.project(ORG, "p4"));
    await redis.del(keys.activityStream(ORG, "p4"), keys.activityMeta(ORG, "p4"));
    expect(await sessions.delete(ORG, "p4", "s1")).toBe(true);
    expect(await redis.exists(keys.session(ORG, "p4", "s1"))).toBe(0);
    expect(await redis.exists(keys.activityStream(ORG, "p4"))).toBe(0);
  });
});

describe("sessions through the gateway when the activity event cannot be written", () => {
  let stack: InProcessStack;
  let stackRedis: Redis;

  beforeAll(async () => {
    stack = await startInProcessStack(inject("redisUrl"), "session-records", { workerCount: 0 });
    stackRedis = await connectRedis(inject("redisUrl"), "command", "test-session-records-stack");
  });

  afterAll(async () => {
    await stackRedis?.quit();
    await stack?.close();
  });

  it("a failed create leaves no session; a failed delete leaves the session", async () => {
    const k = createKeys(stack.prefix);
    expect((await stack.call("POST", "/v1/projects", { name: "damaged" })).status).toBe(200);
    const kept = ((await stack.call("POST", "/v1/projects/damaged/sessions", {})).json as { id: string }).id;
    // The activity stream's key is damaged (another type): every append to it fails.
    const activityKey = k.activityStream("default", "damaged");
    const saved = await stackRedis.dumpBuffer(activityKey);
    await stackRedis.del(activityKey);
    await stackRedis.set(activityKey, "not a stream");
    try {
      const created = await stack.call("POST", "/v1/projects/damaged/sessions", { name: "lost" });
      expect(created.status).toBe(500);
      const listed = (await stack.call("GET", "/v1/projects/damaged/sessions")).json as {
        sessions: { id: string }[];
      };
      expect(listed.sessions.map((s) => s.id)).toEqual([kept]);
      expect((await stack.call("DELETE", `/v1/projects/damaged/sessions/${kept}`)).status).toBe(500);
      expect((await stack.call("GET", `/v1/projects/damaged/sessions/${kept}`)).status).toBe(200);
    } finally {
      await stackRedis.del(activityKey);
      if (saved) await stackRedis.restore(activityKey, 0, saved);
    }
    expect((await stack.call("DELETE", `/v1/projects/damaged/sessions/${kept}`)).status).toBe(200);
    const events = (await activityOf(stackRedis, k.activityStream("default", "damaged"))).map((e) => e.type);
    expect(events).toEqual(["session_created", "session_deleted"]);
  });
});

/** The event types on an activity stream key. */
async function activityOf(r: Redis, key: string): Promise<{ type: string }[]> {
  const rows = (await r.xrange(key, "-", "+")) as [string, string[]][];
  return rows.map(([, fields]) => JSON.parse(fields[1] ?? "{}"));
}

describe("project deletion and session creation", () => {
  it("a session created while its project is deleted is deleted with it or refused", async () => {
    // Many interleavings: creates racing one deleteProject; afterwards no session record of the
    // project may be left (an orphan would reappear when a project of the same id is created).
    for (let round = 0; round < 20; round++) {
      const project = `race-${round}`;
      await registry.upsertProject(ORG, project, project);
      const create = (i: number) =>
        sessions.create(ORG, project, `s${i}`, {}).then(
          () => "created",
          (err: unknown) => (err instanceof MissingRecordError ? "refused" : Promise.reject(err)),
        );
      // Two creates sent before the deletion, three right after it (between its steps, if any).
      const early = [create(0), create(1)];
      const deletion = sessions.deleteProject(ORG, project, `deletion-${round}`);
      const late = [create(2), create(3), create(4)];
      const [deleted] = await Promise.all([deletion, ...early, ...late]);
      const left = await Promise.all(
        Array.from({ length: 5 }, (_, i) => redis.exists(keys.session(ORG, project, `s${i}`))),
      );
      expect({ round, deleted: deleted.length, left }).toEqual({
        round,
        deleted: deleted.length,
        left: [0, 0, 0, 0, 0],
      });
      expect(await redis.exists(keys.sessions(ORG, project))).toBe(0);
    }
  });
});
