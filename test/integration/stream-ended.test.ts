// Deleting a session or a project ends the streams that follow it: SSE clients, `/v1/ws`
// subscriptions and the client SDK get a final `stream_ended` event (no offset) and the stream
// ends, instead of waiting for ever on a stream that will never have another event (a reconnect
// would then answer 404).
import { createPiFleetClient } from "@pi-fleet/client";
import { connectRedis, createKeys } from "@pi-fleet/redis";
import { Registry } from "@pi-fleet/registry";
import {
  EventLog,
  SessionRecords,
  type StreamEntry,
  StreamHub,
  StreamSubscription,
  type SubscriptionSink,
} from "@pi-fleet/streams";
import { openSse, waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";
import { registerSession } from "./helpers/register-session.ts";
import { connectWs, type WsFrame } from "./helpers/ws-client.ts";

type Json = Record<string, unknown>;
let stack: InProcessStack;

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "stream-ended");
});

afterAll(async () => {
  await stack?.close();
});

/**
 * What a gateway process holds for its followers, under its own key prefix: a command connection,
 * an EventLog and a StreamHub on a subscriber connection that `kill()` cuts (CLIENT KILL, as a
 * network failure would; the hub's first reconnect waits 100 ms).
 */
async function hubFixture(label: string) {
  const url = inject("redisUrl");
  const redis = await connectRedis(url, "command", `test-stream-ended-${label}`);
  const name = `test-stream-ended-sub-${label}-${Date.now()}`;
  const sub = await connectRedis(url, "subscriber", name);
  const keys = createKeys(`${stack.prefix}-${label}`);
  const log = new EventLog(redis, keys, 1000);
  const hub = new StreamHub(sub);
  return {
    redis,
    sub,
    keys,
    log,
    hub,
    async kill(): Promise<void> {
      const list = (await redis.client("LIST")) as string;
      const id = /^id=(\d+) /.exec(
        list.split("\n").find((line) => line.includes(` name=${name} `)) ?? "",
      )?.[1];
      expect(id, `connection ${name} in CLIENT LIST`).toBeDefined();
      await redis.client("KILL", "ID", id as string);
    },
    async close(): Promise<void> {
      await hub.close();
      await redis.quit();
    },
  };
}

/** A sink that records what a subscription delivers, one line each (entries as `entry <text>`). */
function recordingSink(got: string[], text: (e: StreamEntry) => string = (e) => e.id): SubscriptionSink {
  return {
    entry: (e) => got.push(`entry ${text(e)}`),
    reset: (reason) => got.push(`reset ${reason}`),
    failed: (err) => got.push(`failed ${String(err)}`),
    ended: (data) => got.push(`ended ${data}`),
  };
}

async function newSession(project: string): Promise<string> {
  return ((await stack.call("POST", `/v1/projects/${project}/sessions`, {})).json as Json).id as string;
}

/** Waits until `pred` holds for the frames received so far. */
async function frameMatching(frames: WsFrame[], pred: (f: WsFrame) => boolean): Promise<WsFrame> {
  for (let i = 0; i < 100; i++) {
    const found = frames.find(pred);
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no matching frame in ${JSON.stringify(frames)}`);
}

describe("stream_ended", () => {
  it("ends a session's SSE, WebSocket and SDK followers when the session is deleted", async () => {
    expect((await stack.call("POST", "/v1/projects", { name: "ending" })).status).toBe(200);
    const sid = await newSession("ending");
    const base = `/v1/projects/ending/sessions/${sid}`;
    const sse = await openSse(`${stack.gateway.url}${base}/events`);
    expect(sse.status).toBe(200);
    const ws = await connectWs(stack.gateway.url);
    ws.send({ kind: "hello", protocol: 1 });
    ws.send({ kind: "subscribe", id: "s1", projectId: "ending", sessionId: sid });
    await frameMatching(ws.frames, (f) => f.kind === "subscribed");
    const client = createPiFleetClient({ baseUrl: stack.gateway.url });
    const items: unknown[] = [];
    const watching = stack.gateway.services.hub.listenerCount;
    const sdk = (async () => {
      for await (const item of client.events("ending", sid)) items.push(item);
    })();
    // The SDK's stream is open once the gateway watches the session for it.
    await waitFor(() => stack.gateway.services.hub.listenerCount > watching, { timeoutMs: 5000 });

    expect((await stack.call("DELETE", base)).status).toBe(200);
    const ended = { type: "stream_ended", reason: "session_deleted" };
    const last = await sse.waitFor((e) => (e.json as Json | undefined)?.type === "stream_ended", 5000);
    expect(last.json).toEqual(ended);
    expect(last.id).toBeUndefined();
    await sse.closed;
    expect(sse.ended).toBe(true);
    const frame = await frameMatching(ws.frames, (f) => f.kind === "event");
    expect(frame).toEqual({ kind: "event", projectId: "ending", sessionId: sid, event: ended });
    // The subscription is gone (its slot free): subscribing again is refused as the session is.
    ws.send({ kind: "subscribe", id: "s2", projectId: "ending", sessionId: sid });
    const again = await frameMatching(ws.frames, (f) => f.id === "s2");
    expect(again).toMatchObject({ kind: "error", code: "PF_ERR_SESSION_NOT_FOUND" });
    ws.ws.close();
    await sdk; // ends by itself, no reconnect
    expect(items).toEqual([{ event: ended }]);
  });

  it("ends the project's activity and session streams when the project is deleted", async () => {
    expect((await stack.call("POST", "/v1/projects", { name: "doomed" })).status).toBe(200);
    const sid = await newSession("doomed");
    const activity = await openSse(`${stack.gateway.url}/v1/projects/doomed/events`);
    const session = await openSse(`${stack.gateway.url}/v1/projects/doomed/sessions/${sid}/events`);
    expect([activity.status, session.status]).toEqual([200, 200]);
    expect((await stack.call("DELETE", "/v1/projects/doomed")).status).toBe(200);
    const ended = { type: "stream_ended", reason: "project_deleted" };
    for (const stream of [activity, session]) {
      const last = await stream.waitFor((e) => (e.json as Json | undefined)?.type === "stream_ended", 5000);
      expect(last.json).toEqual(ended);
      await stream.closed;
    }
  });

  it("ends a follower whose session was deleted between its lookup and its watch", async () => {
    // The end announcement of such a deletion reaches nobody; the subscription finds out itself.
    const f = await hubFixture("race");
    try {
      const ref = { org: "acme", project: "race", session: "s1" };
      await registerSession(f.redis, f.keys, ref);
      const watch = f.hub.watch.bind(f.hub);
      f.hub.watch = async (...args: Parameters<StreamHub["watch"]>) => {
        await new SessionRecords(f.log).delete(ref.org, ref.project, ref.session); // lands just before
        return watch(...args);
      };
      const got: string[] = [];
      await new StreamSubscription(f.log, f.hub, ref, "0", recordingSink(got)).start();
      expect(got).toEqual([`ended ${JSON.stringify({ type: "stream_ended", reason: "session_deleted" })}`]);
    } finally {
      await f.close();
    }
  });

  it("ends a follower whose hub was reconnecting when the deletion was announced", async () => {
    // The announcement is pub/sub (at most once): a gateway that was reconnecting to Redis at that
    // moment learns of the deletion from the stream's record once its hub is back.
    const f = await hubFixture("resync");
    try {
      const ref = { org: "acme", project: "resync", session: "s1" };
      await registerSession(f.redis, f.keys, ref);
      const got: string[] = [];
      await new StreamSubscription(f.log, f.hub, ref, "0", recordingSink(got)).start();
      await f.kill();
      // Deleted before the hub reconnects (its first retry waits 100 ms): nobody hears the end.
      await new SessionRecords(f.log).delete(ref.org, ref.project, ref.session);
      expect(f.sub.status).not.toBe("ready");
      expect(got).toEqual([]);
      await waitFor(() => got.length > 0, { timeoutMs: 5000, message: "the subscription ended" });
      expect(got).toEqual([`ended ${JSON.stringify({ type: "stream_ended", reason: "session_deleted" })}`]);
    } finally {
      await f.close();
    }
  });

  it("ends an activity follower whose hub was away while its project was deleted and created again", async () => {
    const f = await hubFixture("again");
    try {
      await new Registry(f.redis, f.keys).upsertProject("acme", "phoenix", "phoenix");
      const got: string[] = [];
      const ref = { org: "acme", project: "phoenix", activity: true as const };
      await new StreamSubscription(
        f.log,
        f.hub,
        ref,
        undefined,
        recordingSink(got, (e) => e.data),
      ).start();
      await f.kill();
      // While the hub is away (its first retry waits 100 ms): the project is deleted, its deletion
      // finished (the marker lifted), and a project of the same id created with a session.
      await new SessionRecords(f.log).deleteProject("acme", "phoenix", "deletion-1");
      await f.redis.del(f.keys.projectDeleting("acme", "phoenix"));
      await new Promise((resolve) => setTimeout(resolve, 5)); // another createdAt (ms)
      await registerSession(f.redis, f.keys, { org: "acme", project: "phoenix", session: "s-new" });
      expect(f.sub.status).not.toBe("ready");
      await waitFor(() => got.length > 0, { timeoutMs: 5000, message: "the subscription ended" });
      // The old project's follower never sees the new project's events.
      expect(got).toEqual([`ended ${JSON.stringify({ type: "stream_ended", reason: "project_deleted" })}`]);
    } finally {
      await f.close();
    }
  });

  it("after a hub reconnect checks each stream once for all its subscribers, and keeps the live ones", async () => {
    const f = await hubFixture("shared");
    const { log } = f;
    try {
      const refs = ["s1", "s2"].map((session) => ({ org: "acme", project: "many", session }));
      for (const ref of refs) await registerSession(f.redis, f.keys, ref);
      const got: string[][] = [];
      for (let i = 0; i < 30; i++) {
        const seen: string[] = [];
        got.push(seen);
        const ref = refs[i % 2] as (typeof refs)[number];
        await new StreamSubscription(
          log,
          f.hub,
          ref,
          undefined,
          recordingSink(seen, (e) => JSON.parse(e.data).n),
        ).start();
      }
      const calls = { bounds: 0, createdAt: 0 };
      const bounds = log.bounds.bind(log);
      const createdAt = log.recordCreatedAt.bind(log);
      log.bounds = (ref) => {
        calls.bounds++;
        return bounds(ref);
      };
      log.recordCreatedAt = (ref) => {
        calls.createdAt++;
        return createdAt(ref);
      };
      await f.kill();
      await waitFor(() => f.sub.status === "ready" && calls.createdAt > 0, { timeoutMs: 5000 });
      // Written after the reconnect: every subscriber still follows its stream.
      for (const ref of refs)
        await log.append(ref, "", [{ event: { type: "message_update", n: ref.session } }]);
      await waitFor(() => got.every((seen) => seen.length > 0), { timeoutMs: 5000 });
      expect(got).toEqual(Array.from({ length: 30 }, (_, i) => [`entry s${(i % 2) + 1}`]));
      expect(calls).toEqual({ bounds: 2, createdAt: 2 });
    } finally {
      await f.close();
    }
  });

  it("lets an SDK socket subscribe again to a project created again after its deletion", async () => {
    expect((await stack.call("POST", "/v1/projects", { name: "phoenix" })).status).toBe(200);
    const socket = createPiFleetClient({ baseUrl: stack.gateway.url }).ws();
    try {
      const watching = stack.gateway.services.hub.listenerCount;
      const first = socket.subscribe("phoenix", undefined, { after: "0" });
      const seen: string[] = [];
      const done = (async () => {
        for await (const { event } of first) seen.push(event.type);
      })();
      await waitFor(() => stack.gateway.services.hub.listenerCount > watching, { timeoutMs: 5000 });
      expect((await stack.call("DELETE", "/v1/projects/phoenix")).status).toBe(200);
      await done;
      expect(seen.at(-1)).toBe("stream_ended");
      // Created again once the deletion finished (409 until its job removed the files).
      await waitFor(
        async () => (await stack.call("POST", "/v1/projects", { name: "phoenix" })).status === 200,
        {
          timeoutMs: 15_000,
        },
      );
      const second = socket.subscribe("phoenix", undefined, { after: "0" });
      const sid = await newSession("phoenix");
      for await (const { event } of second) {
        if (event.type === "session_created" && event.sessionId === sid) break;
      }
    } finally {
      socket.close();
    }
  });
});
