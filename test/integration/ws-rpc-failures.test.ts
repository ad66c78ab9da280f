// The pi RPC socket when something fails under it: a session stream that cannot go live (the
// hub's subscribe hangs while Redis is unreachable) closes the socket with 1011 within
// PI_FLEET_REQUEST_TIMEOUT_MS and lets go of the frames waiting for it (they waited, unanswered,
// until Redis came back, even after the client left); a frame that parsed but whose handling
// failed is answered as pi's catch-all answers it, naming its id and command (it was answered as a
// parse error). A `/v1/ws` subscribe whose stream cannot go live fails the same way, in time.
import { waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import WebSocket from "ws";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const TIMEOUT_MS = 1000;
let stack: InProcessStack;

type Rec = Record<string, unknown>;

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "ws-rpc-failures", {
    workerCount: 0,
    env: { PI_FLEET_REQUEST_TIMEOUT_MS: String(TIMEOUT_MS) },
  });
  await stack.call("POST", "/v1/projects", { name: "rpcfail" });
});

afterAll(async () => {
  await stack?.close();
});

async function newSession(): Promise<string> {
  return ((await stack.call("POST", "/v1/projects/rpcfail/sessions", {})).json as { id: string }).id;
}

async function open(session: string) {
  const ws = new WebSocket(
    `${stack.gateway.url.replace("http", "ws")}/v1/projects/rpcfail/sessions/${session}/rpc`,
  );
  const records: Rec[] = [];
  ws.on("message", (d) => records.push(JSON.parse(String(d)) as Rec));
  const closed = new Promise<number>((resolve) => ws.on("close", (code) => resolve(code)));
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  return { ws, records, closed };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("pi RPC socket failures", () => {
  it("closes with 1011 when the session stream does not go live in time", async () => {
    const session = await newSession();
    const hub = stack.gateway.services.hub;
    const watch = hub.watch.bind(hub);
    // Redis' pub/sub unreachable for this session: the subscribe is retried for ever.
    hub.watch = (channel, listener) =>
      channel.includes(session) ? new Promise(() => {}) : watch(channel, listener);
    try {
      const c = await open(session);
      for (let i = 0; i < 100; i++)
        c.ws.send(JSON.stringify({ id: i, type: "get_state", pad: "x".repeat(10_000) }));
      const code = await Promise.race([c.closed, sleep(TIMEOUT_MS + 3000).then(() => "still open")]);
      c.ws.terminate();
      expect(code).toBe(1011);
      expect(c.records).toEqual([]);
    } finally {
      hub.watch = watch;
    }
    // Another session's socket is not affected.
    const ok = await open(await newSession());
    ok.ws.send(JSON.stringify({ id: "n", type: "no_such_command" }));
    await waitFor(() => ok.records.find((r) => r.id === "n"));
    ok.ws.close();
  });

  it("/v1/ws: a subscribe whose stream does not go live in time fails, and the socket goes on", async () => {
    const session = await newSession();
    const hub = stack.gateway.services.hub;
    const watch = hub.watch.bind(hub);
    hub.watch = (channel, listener) =>
      channel.includes(session) ? new Promise(() => {}) : watch(channel, listener);
    const ws = new WebSocket(`${stack.gateway.url.replace("http", "ws")}/v1/ws`);
    const frames: Rec[] = [];
    ws.on("message", (d) => frames.push(JSON.parse(String(d)) as Rec));
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    try {
      ws.send(JSON.stringify({ kind: "hello", protocol: 1 }));
      ws.send(JSON.stringify({ kind: "subscribe", id: "s1", projectId: "rpcfail", sessionId: session }));
      // It waited for ever (holding its slot) while the hub's subscribe hung.
      const answer = await waitFor(() => frames.find((f) => f.id === "s1"), {
        timeoutMs: TIMEOUT_MS + 3000,
      });
      expect(answer).toMatchObject({ kind: "error", code: "PF_ERR_SERVICE_UNAVAILABLE" });
    } finally {
      hub.watch = watch;
    }
    // The pub/sub is back: the same stream subscribes on the same socket.
    ws.send(JSON.stringify({ kind: "subscribe", id: "s2", projectId: "rpcfail", sessionId: session }));
    expect(await waitFor(() => frames.find((f) => f.id === "s2"))).toMatchObject({ kind: "subscribed" });
    ws.close();
  });

  it("answers a parsed frame whose handling failed with its id and command, not as a parse error", async () => {
    const c = await open(await newSession());
    const app = stack.gateway.app;
    const inject = app.inject;
    const passThrough = inject as unknown as (opts: unknown) => Promise<unknown>;
    // The route call behind an extension UI answer fails (the app itself, not a status).
    app.inject = ((opts: { url?: string }) =>
      String(opts.url).includes("/extension-ui/")
        ? Promise.reject(new Error("inject failed"))
        : passThrough.call(app, opts)) as unknown as typeof app.inject;
    try {
      c.ws.send(JSON.stringify({ type: "extension_ui_response", id: "dlg-1", value: "yes" }));
      const answer = await waitFor(() => c.records.find((r) => r.type === "response"));
      expect(answer).toEqual({
        id: "dlg-1",
        type: "response",
        command: "extension_ui_response",
        success: false,
        error: "internal error",
      });
    } finally {
      app.inject = inject;
    }
    // Still open; a frame that is not JSON is still pi's parse error.
    c.ws.send("{nope");
    const parse = await waitFor(() => c.records.find((r) => r.command === "parse"));
    expect(parse).toMatchObject({ type: "response", success: false });
    expect(String(parse.error)).toMatch(/^Failed to parse command: /);
    c.ws.close();
  });
});
