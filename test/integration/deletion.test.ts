// Deleting a session or a project leaves nothing of it in Redis (run records, session records,
// streams, history), so an id used again starts empty: a project created again under a deleted
// one's name does not show the old sessions or runs (they came back before). A run still writing
// after its session was deleted cannot bring the session's stream back. A session or project
// deletion that failed half-way is finished by its maintenance job.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_ORG } from "@pi-fleet/contracts";
import { connectRedis, createKeys, type Redis } from "@pi-fleet/redis";
import { EventLog, MissingRecordError } from "@pi-fleet/streams";
import { waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

type Json = Record<string, unknown>;
let stack: InProcessStack;
let redis: Redis;

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "deletion");
  redis = await connectRedis(inject("redisUrl"), "command", "test-deletion");
});

afterAll(async () => {
  await stack?.close();
  await redis?.quit();
});

/** Keys of the stack's prefix that belong to `project` (hash tag `{default.<project>}`). */
async function projectKeys(project: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = await redis.scan(
      cursor,
      "MATCH",
      `${stack.prefix}:*{${DEFAULT_ORG}.${project}}*`,
      "COUNT",
      1000,
    );
    cursor = next;
    found.push(...batch);
  } while (cursor !== "0");
  return found.sort();
}

async function finishedRun(base: string, text: string): Promise<string> {
  const runId = ((await stack.call("POST", `${base}/prompt`, { text })).json as Json).runId as string;
  await waitFor(
    async () => ((await stack.call("GET", `${base}/runs/${runId}`)).json as Json).status === "finished",
    { timeoutMs: 15_000 },
  );
  return runId;
}

describe("deletion", () => {
  it("of a project leaves nothing of its sessions and runs; the name starts empty again", async () => {
    await stack.call("POST", "/v1/projects", { name: "reused" });
    const sid = ((await stack.call("POST", "/v1/projects/reused/sessions")).json as Json).id as string;
    const base = `/v1/projects/reused/sessions/${sid}`;
    const runId = await finishedRun(base, "[[reply:secret plans]]");
    expect((await stack.call("DELETE", "/v1/projects/reused")).status).toBe(200);
    // Only the lease bookkeeping remains (epochs only grow: a reused id must not reuse one).
    await waitFor(async () => {
      const left = (await projectKeys("reused")).map((k) => k.slice(stack.prefix.length + 1).split(":")[0]);
      return left.every((k) => k === "epoch" || k === "lease-clean") ? left : undefined;
    });
    await stack.call("POST", "/v1/projects", { name: "reused" });
    expect((await stack.call("GET", base)).status).toBe(404);
    expect((await stack.call("GET", `${base}/runs/${runId}`)).status).toBe(404);
    expect((await stack.call("GET", "/v1/projects/reused/sessions")).json).toMatchObject({ sessions: [] });
  });

  it("of a session deletes its run records, and a late write cannot bring its stream back", async () => {
    await stack.call("POST", "/v1/projects", { name: "del-session" });
    const sid = ((await stack.call("POST", "/v1/projects/del-session/sessions")).json as Json).id as string;
    const base = `/v1/projects/del-session/sessions/${sid}`;
    const runId = await finishedRun(base, "[[reply:gone soon]]");
    expect((await stack.call("DELETE", base)).status).toBe(200);
    const keys = createKeys(stack.prefix);
    expect(await redis.exists(keys.run(DEFAULT_ORG, "del-session", runId))).toBe(0);
    expect((await projectKeys("del-session")).filter((k) => k.includes(sid))).toEqual([]);
    // A worker still publishing for that session (its run was being aborted) writes nothing.
    const log = new EventLog(redis, keys, 1000);
    await expect(
      log.append({ org: DEFAULT_ORG, project: "del-session", session: sid }, "", [
        { event: { type: "message_update" } },
      ]),
    ).rejects.toBeInstanceOf(MissingRecordError);
    expect((await projectKeys("del-session")).filter((k) => k.includes(sid))).toEqual([]);
  });

  it("of a session: its owner removes the transcript once its run is aborted; a queued run never reopens it", async () => {
    await stack.call("POST", "/v1/projects", { name: "del-transcript" });
    const sid = ((await stack.call("POST", "/v1/projects/del-transcript/sessions")).json as Json)
      .id as string;
    const base = `/v1/projects/del-transcript/sessions/${sid}`;
    await finishedRun(base, "[[reply:first]]");
    const file = join(stack.workspace, DEFAULT_ORG, "sessions", "del-transcript", `${sid}.jsonl`);
    expect(existsSync(file)).toBe(true);
    // A run streaming when the session is deleted (pi writes its aborted message on the abort), and
    // one queued behind it, which the abort lets start.
    const { runId } = (await stack.call("POST", `${base}/prompt`, { text: "[[delay:20]] [[deltas:500]]" }))
      .json as Json;
    const queued = (
      (await stack.call("POST", `${base}/prompt`, { text: "[[reply:queued behind]]" })).json as Json
    ).runId as string;
    await waitFor(
      async () => ((await stack.call("GET", `${base}/runs/${runId}`)).json as Json).status === "running",
      { timeoutMs: 15_000 },
    );
    expect((await stack.call("DELETE", base)).status).toBe(200);
    // The owner answered the deletion's forget_session after pi let go of the session, and removed
    // the file then: it is gone before the purge-session job runs (5 s later).
    expect(existsSync(file)).toBe(false);
    // The queued run does not start on the deleted session: no record, stream or file comes back.
    const keys = createKeys(stack.prefix);
    const left = async () => ({
      file: existsSync(file),
      record: await redis.exists(keys.session(DEFAULT_ORG, "del-transcript", sid)),
      stream: await redis.exists(keys.stream(DEFAULT_ORG, "del-transcript", sid)),
    });
    for (let i = 0; i < 10; i++) {
      expect(await left(), `${i * 200} ms after the deletion`).toEqual({ file: false, record: 0, stream: 0 });
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    // The streaming run was aborted by the deletion (the project's activity says so), the queued one
    // never started.
    const activity = (await new EventLog(redis, keys, 1000).range(
      { org: DEFAULT_ORG, project: "del-transcript", activity: true },
      "0",
      1000,
    )) as { data: string }[];
    const eventsOf = (id: string) =>
      activity
        .map((e) => JSON.parse(e.data) as { type: string; runId?: string })
        .filter((e) => e.runId === id)
        .map((e) => e.type);
    expect(eventsOf(runId as string)).toEqual(["run_queued", "run_started", "run_aborted"]);
    expect(eventsOf(queued)).toEqual(["run_queued"]);
    // A command that reaches the owner anyway (sent past the gateway's session check) opens nothing.
    const answer = await stack.gateway.services.control.send(DEFAULT_ORG, "del-transcript", "command", {
      session: sid,
      payload: { type: "get_state" },
    });
    expect(answer).toMatchObject({ kind: "reply", reply: { ok: false } });
    expect(await left()).toEqual({ file: false, record: 0, stream: 0 });
  });

  it("of a session whose data deletion failed half-way: the maintenance job finishes it", async () => {
    await stack.call("POST", "/v1/projects", { name: "del-retry" });
    const sid = ((await stack.call("POST", "/v1/projects/del-retry/sessions")).json as Json).id as string;
    const base = `/v1/projects/del-retry/sessions/${sid}`;
    await finishedRun(base, "[[reply:left behind?]]");
    const keys = createKeys(stack.prefix);
    // A Redis error in the middle of the deletion: the session's open-runs index cannot be read.
    const runsKey = keys.sessionRuns(DEFAULT_ORG, "del-retry", sid);
    await redis.del(runsKey);
    await redis.set(runsKey, "damaged");
    expect((await stack.call("DELETE", base)).status).toBe(500);
    // The record went first: a retry of the DELETE would answer 404, so it cannot clean up.
    expect((await stack.call("DELETE", base)).status).toBe(404);
    expect(await redis.exists(keys.stream(DEFAULT_ORG, "del-retry", sid))).toBe(1);
    await redis.del(runsKey); // the fault passes
    await waitFor(
      async () => ((await projectKeys("del-retry")).some((k) => k.includes(sid)) ? undefined : true),
      {
        timeoutMs: 25_000,
      },
    );
  });

  it("of a project whose deletion failed half-way: the maintenance job finishes it", async () => {
    await stack.call("POST", "/v1/projects", { name: "half" });
    const project = (await stack.call("GET", "/v1/projects/half")).json as Json;
    const sid = ((await stack.call("POST", "/v1/projects/half/sessions")).json as Json).id as string;
    await finishedRun(`/v1/projects/half/sessions/${sid}`, "[[reply:half gone]]");
    const keys = createKeys(stack.prefix);
    const runsKey = keys.sessionRuns(DEFAULT_ORG, "half", sid);
    await redis.del(runsKey);
    await redis.set(runsKey, "damaged");
    expect((await stack.call("DELETE", "/v1/projects/half")).status).toBe(500);
    expect((await stack.call("DELETE", "/v1/projects/half")).status).toBe(404);
    await redis.del(runsKey); // the fault passes
    await waitFor(
      async () => {
        const left = (await projectKeys("half")).map((k) => k.slice(stack.prefix.length + 1).split(":")[0]);
        return left.every((k) => k === "epoch" || k === "lease-clean") ? left : undefined;
      },
      { timeoutMs: 25_000 },
    );
    await waitFor(() => !existsSync(project.projectDir as string), { timeoutMs: 10_000 });
  });

  it("of a project whose maintenance job could not be queued: nothing is deleted, a retry works", async () => {
    await stack.call("POST", "/v1/projects", { name: "no-job" });
    const sid = ((await stack.call("POST", "/v1/projects/no-job/sessions")).json as Json).id as string;
    await finishedRun(`/v1/projects/no-job/sessions/${sid}`, "[[reply:kept]]");
    const producer = stack.gateway.services.producer;
    const request = producer.requestMaintenance.bind(producer);
    producer.requestMaintenance = async () => {
      throw new Error("Connection is closed."); // a Redis blip on the first step
    };
    try {
      expect((await stack.call("DELETE", "/v1/projects/no-job")).status).toBeGreaterThanOrEqual(500);
    } finally {
      producer.requestMaintenance = request;
    }
    // Nothing was deleted, so the client's retry finds the project and deletes it completely.
    expect((await stack.call("GET", `/v1/projects/no-job/sessions/${sid}`)).status).toBe(200);
    expect((await stack.call("DELETE", "/v1/projects/no-job")).status).toBe(200);
    await waitFor(
      async () => {
        const left = (await projectKeys("no-job")).map((k) => k.slice(stack.prefix.length + 1).split(":")[0]);
        return left.every((k) => k === "epoch" || k === "lease-clean") ? left : undefined;
      },
      { timeoutMs: 15_000 },
    );
  });

  it("of a project: one of the same id cannot be created until its files are gone", async () => {
    await stack.call("POST", "/v1/projects", { name: "reborn" });
    const dir = ((await stack.call("GET", "/v1/projects/reborn")).json as Json).projectDir as string;
    const sid = ((await stack.call("POST", "/v1/projects/reborn/sessions")).json as Json).id as string;
    // The old project's agent leaves a file behind.
    await finishedRun(`/v1/projects/reborn/sessions/${sid}`, "[[bash:echo old > old-secret.txt]]");
    expect(existsSync(join(dir, "old-secret.txt"))).toBe(true);
    expect((await stack.call("DELETE", "/v1/projects/reborn")).status).toBe(200);
    const again = await stack.call("POST", "/v1/projects", { name: "reborn" });
    expect(again).toMatchObject({ status: 409, json: { code: "PF_ERR_PROJECT_BEING_DELETED" } });
    await waitFor(async () => (await stack.call("POST", "/v1/projects", { name: "reborn" })).status === 200, {
      timeoutMs: 15_000,
    });
    // The new project starts empty: no session, no file of the old one.
    expect((await stack.call("GET", "/v1/projects/reborn/sessions")).json).toMatchObject({ sessions: [] });
    expect(existsSync(join(dir, "old-secret.txt"))).toBe(false);
  });
});
