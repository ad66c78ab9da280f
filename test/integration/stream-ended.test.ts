// Deleting a session or a project ends the streams that follow it: SSE clients, `/v1/ws`
// subscriptions and the client SDK get a final `stream_ended` event (no offset) and the stream
// ends, instead of waiting for ever on a stream that will never have another event (a reconnect
// would then answer 404).
import { createPiFleetClient } from "@pi-fleet/client";
import { openSse } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";
import { connectWs, type WsFrame } from "./helpers/ws-client.ts";

type Json = Record<string, unknown>;
let stack: InProcessStack;

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "stream-ended");
});

afterAll(async () => {
  await stack?.close();
});

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
    const sdk = (async () => {
      for await (const item of client.events("ending", sid)) items.push(item);
    })();
    await new Promise((resolve) => setTimeout(resolve, 300)); // the SDK's stream is open

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
});
