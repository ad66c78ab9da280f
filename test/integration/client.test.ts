// `@pi-fleet/client` against an in-process gateway + worker + fake LLM: typed REST calls, SSE
// `events()` following a long run while the test keeps cutting its connection, the WebSocket
// client doing the same across forced socket closes, typed request errors, and `stream_reset` for
// a cursor the stream cannot honour; a stream re-subscribed on the same socket and read slowly
// (bounded queue), and a handshake a keyed gateway refuses. "Nothing lost, nothing repeated" is
// checked against a full `?after=0` replay of the same stream.
import {
  createPiFleetClient,
  defaultWebSocketFactory,
  PiFleetApiError,
  type PiFleetClient,
  PiFleetSocketError,
  type ReconnectInfo,
  type StreamItem,
} from "@pi-fleet/client";
import { openSse } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, expectTypeOf, inject, it } from "vitest";
import { openStreams } from "../../apps/gateway/src/routes/events.ts";
import { openSockets } from "../../apps/gateway/src/routes/ws.ts";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

let stack: InProcessStack;
let client: PiFleetClient;
let projectId = "";

const LONG_RUN = "[[delay:10]] [[deltas:200]]";
const TERMINAL = new Set(["run_finished", "run_failed", "run_aborted", "run_interrupted", "run_cancelled"]);
const fast = { initialDelayMs: 20, maxDelayMs: 200 };

/** Collects items until (and including) the first run-terminal event. */
async function untilRunEnds(items: AsyncIterable<StreamItem>): Promise<StreamItem[]> {
  const out: StreamItem[] = [];
  for await (const item of items) {
    out.push(item);
    if (TERMINAL.has(item.event.type)) break;
  }
  return out;
}

/** The stream's full replay (`?after=0`) up to its first run-terminal event, read with a plain SSE client. */
async function fullReplay(path: string): Promise<StreamItem[]> {
  const sse = await openSse(`${stack.gateway.url}${path}?after=0`);
  try {
    await sse.waitFor((e) => TERMINAL.has((e.json as { type: string }).type), 10_000);
    const out: StreamItem[] = [];
    for (const e of sse.events) {
      const event = e.json as StreamItem["event"];
      out.push(e.id === undefined ? { event } : { offset: e.id, event });
      if (TERMINAL.has(event.type)) break;
    }
    return out;
  } finally {
    sse.close();
    await sse.closed;
  }
}

async function newSession(): Promise<string> {
  const { data, error } = await client.api.POST("/v1/projects/{projectId}/sessions", {
    params: { path: { projectId } },
    body: {},
  });
  if (!data) throw new Error(`session creation failed: ${JSON.stringify(error)}`);
  return data.id;
}

/** Calls `cut` every `everyMs` until stopped; counts the calls that found something to cut. */
function breaker(everyMs: number, cut: () => number): { stop(): number } {
  let cuts = 0;
  const timer = setInterval(() => {
    if (cut() > 0) cuts++;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return cuts;
    },
  };
}

function expectStrictlyIncreasing(items: StreamItem[]): void {
  const offsets = items.flatMap((i) => (i.offset === undefined ? [] : [i.offset]));
  expect(new Set(offsets).size).toBe(offsets.length);
  const numeric = offsets.map((o) => o.split("-").map(BigInt) as [bigint, bigint]);
  for (let i = 1; i < numeric.length; i++) {
    const [a, b] = [numeric[i - 1]!, numeric[i]!];
    expect(a[0] < b[0] || (a[0] === b[0] && a[1] < b[1])).toBe(true);
  }
}

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "client");
  client = createPiFleetClient({ baseUrl: stack.gateway.url });
  const { data } = await client.api.POST("/v1/projects", { body: { name: "Client Test" } });
  projectId = data!.id;
});

afterAll(async () => {
  await stack?.close();
});

describe("@pi-fleet/client", () => {
  it("makes typed REST calls", async () => {
    const created = await client.api.POST("/v1/projects", { body: { name: "Client Test" } });
    expect(created.response.status).toBe(200);
    expect(created.data).toMatchObject({ id: "client-test", name: "Client Test" });

    const id = await newSession();
    const prompt = await client.api.POST("/v1/projects/{projectId}/sessions/{id}/prompt", {
      params: { path: { projectId, id } },
      body: { text: "[[reply:typed hello]]" },
      headers: { "Idempotency-Key": "client-typed-1" },
    });
    expect(prompt.error).toBeUndefined();
    const run = prompt.data!;
    expectTypeOf(run.runId).toEqualTypeOf<string>();
    expect(run).toMatchObject({ ok: true, position: 0 });
    expect(run.offset).toMatch(/^\d+-\d+$/);

    const again = await client.api.POST("/v1/projects/{projectId}/sessions/{id}/prompt", {
      params: { path: { projectId, id } },
      body: { text: "[[reply:typed hello]]" },
      headers: { "Idempotency-Key": "client-typed-1" },
    });
    expect(again.data?.runId).toBe(run.runId);

    const finished = await (async () => {
      for (const item of await untilRunEnds(client.events(projectId, id, { after: run.offset }))) {
        if (TERMINAL.has(item.event.type)) return item.event;
      }
      return undefined;
    })();
    expect(finished).toMatchObject({ type: "run_finished", runId: run.runId });

    const state = await client.api.GET("/v1/projects/{projectId}/sessions/{id}/state", {
      params: { path: { projectId, id } },
    });
    expectTypeOf(state.data!.status).toEqualTypeOf<"idle" | "queued" | "running">();
    expect(state.data).toMatchObject({ status: "idle", queueLength: 0 });
    expect(state.data!.lastOffset).toMatch(/^\d+-\d+$/);

    const record = await client.api.GET("/v1/projects/{projectId}/sessions/{id}/runs/{runId}", {
      params: { path: { projectId, id, runId: run.runId } },
    });
    expect(record.data).toMatchObject({
      id: run.runId,
      status: "finished",
      queuedOffset: expect.any(String),
    });

    const missing = await client.api.GET("/v1/projects/{projectId}/sessions/{id}/state", {
      params: { path: { projectId, id: "nope" } },
    });
    expect(missing.response.status).toBe(404);
    expect(missing.data).toBeUndefined();
    expectTypeOf(missing.error!.code).toEqualTypeOf<string>();
    expect(missing.error?.code).toBe("PF_ERR_SESSION_NOT_FOUND");
  });

  it("events() follows a long run across forced disconnects with no gap and no duplicate", async () => {
    const id = await newSession();
    const reconnects: ReconnectInfo[] = [];
    const collected = untilRunEnds(
      client.events(projectId, id, {
        after: "0",
        reconnect: fast,
        onReconnect: (info) => reconnects.push(info),
      }),
    );
    const cutter = breaker(150, () => {
      const streams = [...openStreams];
      for (const s of streams) s.end();
      return streams.length;
    });
    let items: StreamItem[];
    let runId: string;
    try {
      const prompt = await client.api.POST("/v1/projects/{projectId}/sessions/{id}/prompt", {
        params: { path: { projectId, id } },
        body: { text: LONG_RUN },
      });
      runId = prompt.data!.runId;
      items = await collected;
    } finally {
      const cuts = cutter.stop();
      expect(cuts).toBeGreaterThanOrEqual(3);
    }
    expect(reconnects.filter((r) => r.reason === "closed").length).toBeGreaterThanOrEqual(3);
    expect(reconnects.every((r) => r.cursor === undefined || /^(0|\d+-\d+)$/.test(r.cursor))).toBe(true);

    expect(items.map((i) => i.event.type)).toContain("message_update");
    expect(items.at(-1)?.event).toMatchObject({ type: "run_finished", runId });
    expect(items.filter((i) => i.event.type === "message_update").length).toBeGreaterThanOrEqual(200);
    expectStrictlyIncreasing(items);
    expect(items).toEqual(await fullReplay(`/v1/projects/${projectId}/sessions/${id}/events`));
  });

  it("projectEvents() follows project activity", async () => {
    const id = await newSession();
    const prompt = await client.api.POST("/v1/projects/{projectId}/sessions/{id}/prompt", {
      params: { path: { projectId, id } },
      body: { text: "[[reply:activity]]" },
    });
    const runId = prompt.data!.runId;
    const seen: StreamItem[] = [];
    for await (const item of client.projectEvents(projectId, { after: "0" })) {
      seen.push(item);
      if (item.event.type === "run_finished" && item.event.runId === runId) break;
    }
    expectStrictlyIncreasing(seen);
    const mine = seen.filter((i) => i.event.sessionId === id).map((i) => i.event.type);
    expect(mine).toEqual(["session_created", "run_queued", "run_started", "run_finished"]);
  });

  it("events() yields stream_reset for a cursor ahead of the stream, then everything retained", async () => {
    const id = await newSession();
    const prompt = await client.api.POST("/v1/projects/{projectId}/sessions/{id}/prompt", {
      params: { path: { projectId, id } },
      body: { text: "[[reply:reset me]]" },
    });
    expect(prompt.data?.runId).toBeDefined();
    const full = await fullReplay(`/v1/projects/${projectId}/sessions/${id}/events`);
    const items = await untilRunEnds(client.events(projectId, id, { after: "99999999999999-0" }));
    expect(items[0]).toEqual({
      event: { type: "stream_reset", reason: "lost", firstOffset: full[0]!.offset },
    });
    expect(items.slice(1)).toEqual(full);
  });

  it("events() stops when its signal aborts and throws PiFleetApiError for an unknown session", async () => {
    const id = await newSession();
    const abort = new AbortController();
    const iteration = (async () => {
      const out: StreamItem[] = [];
      for await (const item of client.events(projectId, id, { signal: abort.signal })) out.push(item);
      return out;
    })();
    await new Promise((r) => setTimeout(r, 100));
    abort.abort();
    expect(await iteration).toEqual([]);

    const failing = client.events(projectId, "nope", { after: "0" }).next();
    await expect(failing).rejects.toBeInstanceOf(PiFleetApiError);
    await expect(failing).rejects.toMatchObject({ status: 404, code: "PF_ERR_SESSION_NOT_FOUND" });
  });

  it("the WebSocket client resumes every subscription across forced socket closes", async () => {
    const id = await newSession();
    const reconnects: ReconnectInfo[] = [];
    const socket = client.ws({ reconnect: fast, onReconnect: (info) => reconnects.push(info) });
    try {
      const welcome = await socket.ready();
      expect(welcome.protocol).toBe(1);
      const session = socket.subscribe(projectId, id, { after: "0" });
      const activity = socket.subscribe(projectId, undefined, { after: "0" });
      expect(() => socket.subscribe(projectId, id)).toThrow(PiFleetSocketError);
      const collected = untilRunEnds(session);

      const result = await socket.request("prompt", { projectId, sessionId: id, text: LONG_RUN });
      expectTypeOf(result.runId).toEqualTypeOf<string>();
      expect(result).toMatchObject({ ok: true, runId: expect.any(String), offset: expect.any(String) });

      const cutter = breaker(200, () => {
        const sockets = [...openSockets];
        for (const c of sockets) c.close(1001, "test");
        return sockets.length;
      });
      let items: StreamItem[];
      try {
        items = await collected;
      } finally {
        expect(cutter.stop()).toBeGreaterThanOrEqual(3);
      }
      expect(reconnects.length).toBeGreaterThanOrEqual(3);
      expect(socket.connectionId).not.toBe(welcome.connectionId);

      expect(items.at(-1)?.event).toMatchObject({ type: "run_finished", runId: result.runId });
      expect(items.filter((i) => i.event.type === "message_update").length).toBeGreaterThanOrEqual(200);
      expectStrictlyIncreasing(items);
      expect(items).toEqual(await fullReplay(`/v1/projects/${projectId}/sessions/${id}/events`));

      // The activity subscription was resumed too: exactly the project's activity stream.
      const seen: StreamItem[] = [];
      for await (const item of activity) {
        seen.push(item);
        if (item.event.type === "run_finished" && item.event.runId === result.runId) break;
      }
      expectStrictlyIncreasing(seen);
      const activityReplay: StreamItem[] = [];
      for await (const item of client.projectEvents(projectId, { after: "0" })) {
        activityReplay.push(item);
        if (item.offset === seen.at(-1)?.offset) break;
      }
      expect(seen).toEqual(activityReplay);

      // Requests work on the new connection; errors are typed.
      const state = await socket.request("state", { projectId, sessionId: id });
      expectTypeOf(state.status).toEqualTypeOf<"idle" | "queued" | "running">();
      expect(state).toMatchObject({ status: "idle", lastOffset: items.at(-1)?.offset });
      const bad = socket.request("prompt", { projectId, sessionId: "nope", text: "x" });
      await expect(bad).rejects.toBeInstanceOf(PiFleetApiError);
      await expect(bad).rejects.toMatchObject({ status: 404, code: "PF_ERR_SESSION_NOT_FOUND" });
      const unknown = socket.subscribe(projectId, "nope");
      await expect(untilRunEnds(unknown)).rejects.toMatchObject({
        name: "PiFleetSocketError",
        code: "PF_ERR_SESSION_NOT_FOUND",
      });
    } finally {
      socket.close();
    }
    await expect(socket.ready()).rejects.toMatchObject({ code: "PF_CLIENT_CLOSED" });
  });

  it("the WebSocket client re-subscribes a stream on the same socket and bounds a slow consumer's queue", async () => {
    const id = await newSession();
    let unsubscribes = 0;
    const counting = createPiFleetClient({
      baseUrl: stack.gateway.url,
      webSocket: (url, headers) => {
        const ws = defaultWebSocketFactory(url, headers);
        const send = ws.send.bind(ws);
        ws.send = (data) => {
          if (String(data).includes('"kind":"unsubscribe"')) unsubscribes++;
          send(data);
        };
        return ws;
      },
    });
    const socket = counting.ws({ reconnect: fast, maxQueuedEvents: 16 });
    try {
      const result = await socket.request("prompt", { projectId, sessionId: id, text: "[[deltas:200]]" });
      const full = await fullReplay(`/v1/projects/${projectId}/sessions/${id}/events`);
      expect(full.at(-1)?.event).toMatchObject({ type: "run_finished", runId: result.runId });
      // A replay burst: the first subscription stops after 5 items, the gateway still sending.
      const first: StreamItem[] = [];
      for await (const item of socket.subscribe(projectId, id, { after: "0" })) {
        first.push(item);
        if (first.length === 5) break;
      }
      expect(first).toEqual(full.slice(0, 5));
      // The same stream again at once, read slowly: its own replay, whole and in order.
      const again: StreamItem[] = [];
      for await (const item of socket.subscribe(projectId, id, { after: "0" })) {
        again.push(item);
        if (again.length % 8 === 0) await new Promise((r) => setTimeout(r, 2));
        if (TERMINAL.has(item.event.type)) break;
      }
      expect(again).toEqual(full);
      // 1 for the closed subscription; the others paused the slow one (16 items at most queued).
      expect(unsubscribes).toBeGreaterThanOrEqual(3);
    } finally {
      socket.close();
    }
  });

  it("the WebSocket client stops with PF_CLIENT_REJECTED when a keyed gateway refuses the handshake", async () => {
    const keyed = await startInProcessStack(inject("redisUrl"), "client-keyed", {
      workerCount: 0,
      env: { PI_FLEET_ADMIN_TOKEN: "t".repeat(40), PI_FLEET_SECRET_KEY: "a".repeat(64) },
    });
    const socket = createPiFleetClient({ baseUrl: keyed.gateway.url, apiKey: "pfk_not_a_key" }).ws({
      reconnect: fast,
    });
    try {
      const sub = socket.subscribe("p", "s");
      const refused = await Promise.race([
        socket.ready().catch((e: unknown) => e),
        new Promise((r) => setTimeout(() => r("still retrying"), 5000)),
      ]);
      expect(refused).toBeInstanceOf(PiFleetSocketError);
      expect(refused).toMatchObject({ code: "PF_CLIENT_REJECTED", status: 401 });
      await expect(untilRunEnds(sub)).rejects.toMatchObject({ code: "PF_CLIENT_REJECTED" });
    } finally {
      socket.close();
      await keyed.close();
    }
  });

  it("the WebSocket client yields stream_reset for a cursor ahead of the stream", async () => {
    const id = await newSession();
    const socket = client.ws({ reconnect: fast });
    try {
      const result = await socket.request("prompt", { projectId, sessionId: id, text: "[[reply:ws reset]]" });
      expect(result.runId).toBeDefined();
      const full = await fullReplay(`/v1/projects/${projectId}/sessions/${id}/events`);
      const items = await untilRunEnds(socket.subscribe(projectId, id, { after: "99999999999999-0" }));
      expect(items[0]?.event).toMatchObject({ type: "stream_reset", reason: "lost" });
      expect(items[0]?.offset).toBeUndefined();
      expect(items.slice(1)).toEqual(full);
    } finally {
      socket.close();
    }
  });
});
