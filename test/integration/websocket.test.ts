// `/v1/ws`: hello/welcome, subscriptions with replay and live events (sessions and project
// activity), requests executed like the REST routes, ping/pong, frame validation, 1001 on
// gateway shutdown, and one subscription per stream however subscribes race. Uses Node's
// built-in WebSocket client.
import { waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";
import { connectWs, type WsFrame } from "./helpers/ws-client.ts";

let stack: InProcessStack;
let session = "";

const send = (ws: WebSocket, frame: WsFrame) => ws.send(JSON.stringify(frame));

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "websocket");
  await stack.call("POST", "/v1/projects", { name: "wsp" });
  session = ((await stack.call("POST", "/v1/projects/wsp/sessions", {})).json as { id: string }).id;
});

afterAll(async () => {
  await stack?.close();
});

describe("/v1/ws", () => {
  it("greets, subscribes, runs a prompt by request and streams its events in order", async () => {
    const { ws, frames } = await connectWs(stack.gateway.url);
    send(ws, { kind: "subscribe", projectId: "wsp", sessionId: session });
    await waitFor(() => frames.find((f) => f.kind === "error"));
    expect(frames[0]).toMatchObject({ kind: "error", error: "send hello first" });

    send(ws, { kind: "hello", protocol: 1 });
    await waitFor(() => frames.find((f) => f.kind === "welcome"));
    expect(frames.find((f) => f.kind === "welcome")).toMatchObject({ protocol: 1 });

    send(ws, { kind: "subscribe", id: "s1", projectId: "wsp", sessionId: session, after: "0" });
    send(ws, { kind: "subscribe", id: "s2", projectId: "wsp" });
    await waitFor(() => frames.filter((f) => f.kind === "subscribed").length === 2);
    send(ws, {
      kind: "request",
      id: 7,
      method: "prompt",
      params: { projectId: "wsp", sessionId: session, text: "[[reply:over ws]]" },
    });
    const response = await waitFor(() => frames.find((f) => f.kind === "response" && f.id === 7));
    expect(response.ok).toBe(true);
    const runId = (response.result as { runId: string }).runId;
    await waitFor(
      () =>
        frames.find(
          (f) =>
            f.kind === "event" &&
            f.sessionId === session &&
            (f.event as { type: string }).type === "run_finished",
        ),
      { timeoutMs: 10_000 },
    );
    await waitFor(() =>
      frames.find(
        (f) =>
          f.kind === "event" &&
          f.sessionId === undefined &&
          (f.event as { type: string }).type === "run_finished",
      ),
    );
    const sessionEvents = frames.filter((f) => f.kind === "event" && f.sessionId === session);
    const offsets = sessionEvents.map((f) => f.offset as string);
    expect(new Set(offsets).size).toBe(offsets.length);
    const types = sessionEvents.map((f) => (f.event as { type: string }).type);
    expect(types[0]).toBe("run_queued");
    expect(types).toContain("message_update");
    expect(types.at(-1)).toBe("run_finished");
    expect(
      sessionEvents.every(
        (f) =>
          (f.event as { runId?: string }).runId === undefined ||
          (f.event as { runId?: string }).runId === runId,
      ),
    ).toBe(true);
    const activity = frames
      .filter((f) => f.kind === "event" && f.sessionId === undefined)
      .map((f) => (f.event as { type: string }).type);
    expect(activity).toEqual(["run_queued", "run_started", "run_finished"]);

    // The same stream over SSE has the same offsets.
    const sse = await fetch(`${stack.gateway.url}/v1/projects/wsp/sessions/${session}/state`);
    expect(((await sse.json()) as { lastOffset: string }).lastOffset).toBe(offsets.at(-1));

    // Requests go through the REST routes: validation errors come back as responses.
    send(ws, {
      kind: "request",
      id: 8,
      method: "prompt",
      params: { projectId: "wsp", sessionId: session, text: "x", bogus: 1 },
    });
    const bad = await waitFor(() => frames.find((f) => f.kind === "response" && f.id === 8));
    expect(bad).toMatchObject({ ok: false, status: 400 });
    send(ws, {
      kind: "request",
      id: 9,
      method: "commands",
      params: { projectId: "wsp", sessionId: session, type: "get_last_assistant_text" },
    });
    const cmd = await waitFor(() => frames.find((f) => f.kind === "response" && f.id === 9));
    expect(cmd.result).toEqual({ type: "get_last_assistant_text", success: true, data: { text: "over ws" } });
    // A command's params are its REST body: a field it does not define is a 400, as over REST.
    send(ws, {
      kind: "request",
      id: 10,
      method: "commands",
      params: { projectId: "wsp", sessionId: session, type: "get_messages", limit: 5 },
    });
    const badCmd = await waitFor(() => frames.find((f) => f.kind === "response" && f.id === 10));
    expect(badCmd).toMatchObject({
      ok: false,
      status: 400,
      error: { code: "PF_ERR_REQUEST_INVALID", details: [{ path: "body", field: "limit" }] },
    });

    send(ws, { kind: "ping", id: "p" });
    await waitFor(() => frames.find((f) => f.kind === "pong" && f.id === "p"));
    ws.send("{not json");
    await waitFor(() => frames.find((f) => f.kind === "error" && f.code === "PF_ERR_REQUEST_MALFORMED_JSON"));
    send(ws, { kind: "subscribe", projectId: "wsp", sessionId: "../etc" });
    await waitFor(
      () => frames.filter((f) => f.kind === "error" && f.code === "PF_ERR_REQUEST_INVALID").length >= 2,
    );
    send(ws, { kind: "subscribe", id: "u", projectId: "wsp", sessionId: "nope" });
    await waitFor(() =>
      frames.find((f) => f.kind === "error" && f.id === "u" && f.code === "PF_ERR_SESSION_NOT_FOUND"),
    );
    // An offset past Redis's 64-bit entry ids is refused; it closed the socket with 1011.
    send(ws, { kind: "subscribe", id: "big", projectId: "wsp", after: "1-99999999999999999999" });
    await waitFor(() =>
      frames.find((f) => f.kind === "error" && f.id === "big" && f.code === "PF_ERR_STREAM_CURSOR_INVALID"),
    );

    send(ws, { kind: "unsubscribe", id: "x", projectId: "wsp", sessionId: session });
    await waitFor(() => frames.find((f) => f.kind === "unsubscribed" && f.id === "x"));
    const before = frames.length;
    await stack.call("POST", `/v1/projects/wsp/sessions/${session}/prompt`, { text: "[[reply:unheard]]" });
    await waitFor(() =>
      frames
        .slice(before)
        .find(
          (f) =>
            f.sessionId === undefined && (f.event as { type?: string } | undefined)?.type === "run_finished",
        ),
    );
    expect(frames.slice(before).some((f) => f.sessionId === session)).toBe(false);
    ws.close();
  });

  it("resumes a subscription after an offset with no gap and no duplicate", async () => {
    const replay = async (after: string, until: (frames: WsFrame[]) => boolean) => {
      const c = await connectWs(stack.gateway.url);
      send(c.ws, { kind: "hello", protocol: 1 });
      send(c.ws, { kind: "subscribe", projectId: "wsp", sessionId: session, after });
      await waitFor(() => until(c.frames.filter((f) => f.kind === "event")));
      c.ws.close();
      return c.frames.filter((f) => f.kind === "event").map((f) => f.offset as string);
    };
    const lastOffset = (
      (await stack.call("GET", `/v1/projects/wsp/sessions/${session}/state`)).json as { lastOffset: string }
    ).lastOffset;
    const full = await replay("0", (events) => events.some((f) => f.offset === lastOffset));
    expect(full.length).toBeGreaterThan(20);
    const cut = full[9]!;
    const rest = await replay(cut, (events) => events.some((f) => f.offset === lastOffset));
    expect([...full.slice(0, 10), ...rest]).toEqual(full);
  });

  it("closes sockets with 1001 when the gateway shuts down", async () => {
    const own = await startInProcessStack(inject("redisUrl"), "websocket-close");
    const { ws, frames, closed } = await connectWs(own.gateway.url);
    send(ws, { kind: "hello", protocol: 1 });
    await waitFor(() => frames.find((f) => f.kind === "welcome"));
    await own.close();
    expect((await closed).code).toBe(1001);
  });

  it("holds one subscription per stream when subscribes race, and none after the socket closed", async () => {
    // Frames are handled concurrently: 50 pipelined subscribes to one stream all passed the
    // "already subscribed" check before the first lookup returned (50 hub listeners, 49 left
    // behind after close), and a subscribe racing the close registered after dispose.
    const hub = stack.gateway.services.hub;
    const before = hub.listenerCount;
    const { ws, frames, closed } = await connectWs(stack.gateway.url);
    send(ws, { kind: "hello", protocol: 1 });
    await waitFor(() => frames.find((f) => f.kind === "welcome"));
    for (let i = 0; i < 50; i++)
      send(ws, { kind: "subscribe", id: `d${i}`, projectId: "wsp", sessionId: session });
    await waitFor(() => frames.filter((f) => f.kind === "subscribed" || f.kind === "error").length === 50);
    expect(frames.filter((f) => f.kind === "subscribed")).toHaveLength(1);
    expect(frames.filter((f) => f.kind === "error" && f.error === "already subscribed")).toHaveLength(49);
    expect(hub.listenerCount).toBe(before + 1);
    ws.close();
    await closed;
    await waitFor(() => hub.listenerCount <= before, { message: "hub listeners given back" });

    for (let i = 0; i < 10; i++) {
      const c = await connectWs(stack.gateway.url);
      c.send({ kind: "hello", protocol: 1 });
      c.send({ kind: "subscribe", projectId: "wsp", sessionId: session });
      c.ws.close();
    }
    // A later subscribe's lookup answers after theirs (one Redis connection, in order): once it
    // is subscribed, nothing of the ten closed sockets may be in the hub.
    const last = await connectWs(stack.gateway.url);
    last.send({ kind: "hello", protocol: 1 });
    last.send({ kind: "subscribe", projectId: "wsp", sessionId: session });
    await waitFor(() => last.frames.find((f) => f.kind === "subscribed"));
    await waitFor(() => hub.listenerCount <= before + 1, { message: "no listener of a closed socket" });
    last.ws.close();
  });

  it("acknowledges a live subscription only once it watches the stream", async () => {
    // A client that prompts on `subscribed` must see its run_queued, also when the gateway is slow
    // to subscribe to the stream's channel (held back here by 200 ms).
    const hub = stack.gateway.services.hub;
    const watch = hub.watch.bind(hub);
    hub.watch = async (...args: Parameters<typeof watch>) => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      return watch(...args);
    };
    try {
      const { ws, frames } = await connectWs(stack.gateway.url);
      send(ws, { kind: "hello", protocol: 1 });
      send(ws, { kind: "subscribe", id: "live", projectId: "wsp", sessionId: session });
      const ack = await waitFor(() => frames.find((f) => f.kind === "subscribed" && f.id === "live"));
      // Live only: the ack names where the stream starts (a resubscribe after it misses nothing).
      expect(ack.offset).toMatch(/^[0-9]+-[0-9]+$/);
      const res = await stack.call("POST", `/v1/projects/wsp/sessions/${session}/prompt`, {
        text: "[[reply:seen]]",
      });
      const runId = (res.json as { runId: string }).runId;
      await waitFor(() =>
        frames.find((f) => {
          const event = f.event as { type?: string; runId?: string } | undefined;
          return f.kind === "event" && event?.type === "run_queued" && event.runId === runId;
        }),
      );
      ws.close();
    } finally {
      hub.watch = watch;
    }
  });
});
