// The rules both socket kinds (`/v1/ws` and the pi RPC socket) share, in keyed mode on an
// in-process gateway + worker + Redis: a client that never completes the close handshake does not
// hold up shutdown; a client that stops answering pings is cut and gives its stream slot back;
// every `/v1/ws` subscription is one of the key's open streams (PI_FLEET_MAX_STREAMS_PER_KEY); an
// unsubscribe that overtakes its subscribe wins; ids that would be resolved away in a route URL
// ("..") are refused; requests made over a socket are audited with the client's address; a burst
// of queued RPC commands is answered in full and in order.

import { waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import WebSocket from "ws";
import { FrameFlow, MAX_FRAMES_IN_FLIGHT } from "../../apps/gateway/src/ws/socket-lifecycle.ts";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const ADMIN = "socket-lifecycle-operator-token-0123";
const HEARTBEAT_MS = 300;
const MAX_STREAMS = 3;

type Json = Record<string, unknown>;

let stack: InProcessStack;
let key = "";
let project = "";
const sessions: string[] = [];

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "socklife", {
    env: {
      PI_FLEET_ADMIN_TOKEN: ADMIN,
      PI_FLEET_SECRET_KEY: "d".repeat(64),
      PI_FLEET_SSE_HEARTBEAT_MS: String(HEARTBEAT_MS),
      PI_FLEET_MAX_STREAMS_PER_KEY: String(MAX_STREAMS),
    },
  });
  expect((await stack.call("POST", "/v1/admin/orgs", { id: "org-sock" }, ADMIN)).status).toBe(201);
  key = ((await stack.call("POST", "/v1/admin/orgs/org-sock/keys", { role: "admin" }, ADMIN)).json as Json)
    .key as string;
  await stack.registerFake(key);
  project = ((await stack.call("POST", "/v1/projects", { name: "sockets" }, key)).json as Json).id as string;
  for (let i = 0; i < 3; i++) {
    sessions.push(
      ((await stack.call("POST", `/v1/projects/${project}/sessions`, undefined, key)).json as Json)
        .id as string,
    );
  }
});

afterAll(async () => {
  await stack?.close();
});

interface Client {
  ws: WebSocket;
  frames: Json[];
  closed: Promise<{ code: number; at: number }>;
  send(frame: Json): void;
  /** The first frame matching `pred` (waits). */
  frame(pred: (f: Json) => boolean, what: string): Promise<Json>;
}

function connect(path: string, opts: { autoPong?: boolean; localAddress?: string } = {}): Promise<Client> {
  const ws = new WebSocket(`${stack.gateway.url.replace("http", "ws")}${path}`, {
    headers: { authorization: `Bearer ${key}` },
    autoPong: opts.autoPong ?? true,
    ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
  });
  const frames: Json[] = [];
  ws.on("message", (d) => frames.push(JSON.parse(String(d)) as Json));
  const closed = new Promise<{ code: number; at: number }>((resolve) =>
    ws.on("close", (code) => resolve({ code, at: Date.now() })),
  );
  return new Promise((resolve, reject) => {
    ws.on("open", () =>
      resolve({
        ws,
        frames,
        closed,
        send: (f) => ws.send(JSON.stringify(f)),
        frame: (pred, what) =>
          waitFor(() => frames.find(pred), { timeoutMs: 10_000, message: what }) as Promise<Json>,
      }),
    );
    ws.on("unexpected-response", (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.on("error", reject);
  });
}

async function hello(): Promise<Client> {
  const c = await connect("/v1/ws");
  c.send({ kind: "hello", protocol: 1 });
  await c.frame((f) => f.kind === "welcome", "welcome");
  return c;
}

describe("socket liveness", () => {
  it("cuts a client that stops answering pings, and its stream slot comes back", async () => {
    const silent = await connect("/v1/ws", { autoPong: false });
    const healthy = await hello();
    const opened = Date.now();
    const { code, at } = await silent.closed;
    expect(code, "terminated, no close frame").toBe(1006);
    // Two intervals in theory; room for a busy machine (integration files run two at a time).
    // Without pings it would never be cut at all.
    expect(at - opened).toBeLessThan(HEARTBEAT_MS * 10);
    await new Promise((r) => setTimeout(r, HEARTBEAT_MS * 3));
    expect(healthy.ws.readyState, "a client that answers pings stays").toBe(WebSocket.OPEN);
    // MAX_STREAMS slots: the silent socket's was released (healthy + 2 more fit).
    const more = [await connect("/v1/ws"), await connect("/v1/ws")];
    for (const c of [healthy, ...more]) c.ws.close();
  });
});

describe("the key's stream slots", () => {
  it("refuses an upgrade past PI_FLEET_MAX_STREAMS_PER_KEY with 429 before it happens", async () => {
    const open = [await connect("/v1/ws"), await connect("/v1/ws"), await connect("/v1/ws")];
    for (const path of ["/v1/ws", `/v1/projects/${project}/sessions/${sessions[0]}/rpc`]) {
      const refused = await new Promise<{ status: number; retryAfter: unknown }>((resolve, reject) => {
        const ws = new WebSocket(`${stack.gateway.url.replace("http", "ws")}${path}`, {
          headers: { authorization: `Bearer ${key}` },
        });
        ws.on("unexpected-response", (_req, res) => {
          resolve({ status: res.statusCode ?? 0, retryAfter: res.headers["retry-after"] });
          ws.terminate();
        });
        ws.on("open", () => reject(new Error(`${path}: upgraded past the cap`)));
        ws.on("error", () => {});
      });
      expect(refused.status, path).toBe(429);
      expect(refused.retryAfter, path).toBeDefined();
    }
    // A plain request to the socket route takes no slot, and a closed socket gives its slot back.
    expect((await fetch(`${stack.gateway.url}/v1/healthz`)).status).toBe(200);
    open[0]?.ws.close();
    await open[0]?.closed;
    const again = await waitFor(() => connect("/v1/ws").catch(() => undefined), {
      timeoutMs: 5000,
      message: "a slot after a close",
    });
    for (const c of [...open.slice(1), again]) c.ws.close();
    await Promise.all([...open.slice(1), again].map((c) => c.closed));
  });
});

describe("/v1/ws subscriptions", () => {
  it("each subscription is one of the key's open streams", async () => {
    const c = await hello(); // 1 slot
    for (const [i, s] of sessions.slice(0, 2).entries()) {
      c.send({ kind: "subscribe", id: `s${i}`, projectId: project, sessionId: s });
      await c.frame((f) => f.kind === "subscribed" && f.id === `s${i}`, `subscribed s${i}`); // 2, 3
    }
    c.send({ kind: "subscribe", id: "s2", projectId: project, sessionId: sessions[2] });
    const refused = await c.frame((f) => f.id === "s2", "the third subscription's answer");
    expect(refused).toMatchObject({ kind: "error", code: "PF_ERR_RATE_LIMITED" });
    const sse = await fetch(`${stack.gateway.url}/v1/projects/${project}/sessions/${sessions[2]}/events`, {
      headers: { authorization: `Bearer ${key}` },
    });
    expect(sse.status, "SSE on the same key while it is full").toBe(429);
    await sse.body?.cancel();

    c.send({ kind: "unsubscribe", id: "u0", projectId: project, sessionId: sessions[0] });
    await c.frame((f) => f.kind === "unsubscribed" && f.id === "u0", "unsubscribed");
    c.send({ kind: "subscribe", id: "s3", projectId: project, sessionId: sessions[2] });
    await c.frame((f) => f.kind === "subscribed" && f.id === "s3", "a subscription in the freed slot");
    c.ws.close();
    await c.closed;
  });

  it("an unsubscribe that overtakes its subscribe wins", async () => {
    const c = await hello();
    for (let round = 0; round < 5; round++) {
      // Sent together: the subscribe is still looking its session up when the unsubscribe lands.
      c.send({ kind: "subscribe", id: `s${round}`, projectId: project, sessionId: sessions[0] });
      c.send({ kind: "unsubscribe", id: `u${round}`, projectId: project, sessionId: sessions[0] });
      await c.frame((f) => f.kind === "unsubscribed" && f.id === `u${round}`, "unsubscribed");
      const answer = await c.frame((f) => f.id === `s${round}`, "the subscribe's answer");
      if (answer.kind === "subscribed") {
        // The unsubscribe came after the set-up: it removed the subscription (nothing to check).
        continue;
      }
      expect(answer).toMatchObject({ kind: "error", code: "PF_ERR_REQUEST_INVALID" });
    }
    // No subscription was left behind: subscribing again works (not "already subscribed"), and
    // the key's slots were all given back (this socket + 1 subscription).
    c.send({ kind: "subscribe", id: "again", projectId: project, sessionId: sessions[0] });
    await c.frame((f) => f.kind === "subscribed" && f.id === "again", "subscribed again");
    c.ws.close();
    await c.closed;
  });

  it("a subscribe right after an unsubscribe that cancelled one is set up, not refused", async () => {
    const c = await hello();
    for (let round = 0; round < 5; round++) {
      // All three at once: the first subscribe is still looking its session up when the others land.
      c.send({ kind: "subscribe", id: `a${round}`, projectId: project, sessionId: sessions[0] });
      c.send({ kind: "unsubscribe", id: `u${round}`, projectId: project, sessionId: sessions[0] });
      c.send({ kind: "subscribe", id: `b${round}`, projectId: project, sessionId: sessions[0] });
      // Every subscribe is answered: the first with an error or (set up before the unsubscribe)
      // with `subscribed`, the second with `subscribed`.
      const first = await c.frame((f) => f.id === `a${round}`, "the first subscribe's answer");
      expect(["subscribed", "error"]).toContain(first.kind);
      const second = await c.frame((f) => f.id === `b${round}`, "the second subscribe's answer");
      expect(second).toMatchObject({ kind: "subscribed" });
      c.send({ kind: "unsubscribe", id: `v${round}`, projectId: project, sessionId: sessions[0] });
      await c.frame((f) => f.kind === "unsubscribed" && f.id === `v${round}`, "unsubscribed");
    }
    c.ws.close();
    await c.closed;
  });
});

describe("subscribe / unsubscribe sequences", () => {
  it("each unsubscribe cancels the subscribes sent before it, and only those", async () => {
    const c = await hello();
    for (let round = 0; round < 3; round++) {
      // Sent at once: A looks its session up, B waits for the cancelled A, C waits too.
      const ids = { a: `a${round}`, b: `b${round}`, c: `c${round}` };
      c.send({ kind: "subscribe", id: ids.a, projectId: project, sessionId: sessions[0] });
      c.send({ kind: "unsubscribe", id: `u${round}`, projectId: project, sessionId: sessions[0] });
      c.send({ kind: "subscribe", id: ids.b, projectId: project, sessionId: sessions[0] });
      c.send({ kind: "unsubscribe", id: `v${round}`, projectId: project, sessionId: sessions[0] });
      c.send({ kind: "subscribe", id: ids.c, projectId: project, sessionId: sessions[0] });
      expect(await c.frame((f) => f.id === ids.b, "B's answer")).toMatchObject({
        kind: "error",
        code: "PF_ERR_REQUEST_INVALID",
      });
      // C came after the last unsubscribe: it is the one set up (before: B was, and C refused).
      expect(await c.frame((f) => f.id === ids.c, "C's answer")).toMatchObject({ kind: "subscribed" });
      c.send({ kind: "unsubscribe", id: `w${round}`, projectId: project, sessionId: sessions[0] });
      await c.frame((f) => f.kind === "unsubscribed" && f.id === `w${round}`, "unsubscribed");
    }
    c.ws.close();
    await c.closed;
  });
});

describe("ids that become part of a route URL", () => {
  it('refuses "." and ".." as an extension UI request id or an RPC session path', async () => {
    const c = await hello();
    c.send({
      kind: "request",
      id: 1,
      method: "extension_ui_response",
      params: { projectId: project, sessionId: sessions[0], requestId: "..", cancelled: true },
    });
    expect(await c.frame((f) => f.id === 1, "the answer")).toMatchObject({
      kind: "error",
      code: "PF_ERR_REQUEST_INVALID",
    });
    c.ws.close();
    await c.closed;

    const rpc = await connect(`/v1/projects/${project}/sessions/${sessions[0]}/rpc`);
    rpc.send({ id: "sw", type: "switch_session", sessionPath: ".." });
    const answer = await rpc.frame((f) => f.id === "sw", "switch_session's answer");
    expect(answer).toMatchObject({ type: "response", command: "switch_session", success: false });
    expect(String(answer.error)).toMatch(/must be a session id/);
    rpc.ws.close();
    await rpc.closed;
  });
});

describe("requests over sockets", () => {
  it("are audited with the client's address", async () => {
    const from = "127.0.0.2";
    const c = await connect("/v1/ws", { localAddress: from });
    c.send({ kind: "hello", protocol: 1 });
    c.send({
      kind: "request",
      id: "k",
      method: "abort",
      params: { projectId: project, sessionId: sessions[1] },
    });
    await c.frame((f) => f.kind === "response" && f.id === "k", "abort's response");
    const rpc = await connect(`/v1/projects/${project}/sessions/${sessions[1]}/rpc`, { localAddress: from });
    rpc.send({ id: "a", type: "abort" });
    await rpc.frame((f) => f.id === "a", "abort's response");
    const audit = (await stack.call("GET", "/v1/audit", undefined, key)).json as { entries: Json[] };
    const aborts = audit.entries.filter((e) => String(e.action).includes("abort"));
    expect(aborts.length, JSON.stringify(audit.entries.slice(0, 5))).toBeGreaterThanOrEqual(2);
    for (const e of aborts.slice(0, 2)) expect(e.ip).toBe(from);
    c.ws.close();
    rpc.ws.close();
    await Promise.all([c.closed, rpc.closed]);
  });

  it("answers a burst of queued RPC commands in full and in order", async () => {
    const rpc = await connect(`/v1/projects/${project}/sessions/${sessions[2]}/rpc`);
    const n = MAX_FRAMES_IN_FLIGHT * 3;
    for (let i = 0; i < n; i++) rpc.send({ id: `a${i}`, type: "abort" });
    await waitFor(() => rpc.frames.filter((f) => f.type === "response").length >= n || undefined, {
      timeoutMs: 30_000,
      message: `${n} responses`,
    });
    const ids = rpc.frames.filter((f) => f.type === "response").map((f) => f.id);
    expect(ids).toEqual(Array.from({ length: n }, (_, i) => `a${i}`));
    rpc.ws.close();
    await rpc.closed;
  });
});

describe("FrameFlow", () => {
  it("pauses the socket at the in-flight bound and resumes it at half", async () => {
    const calls: string[] = [];
    const socket = {
      readyState: 1,
      OPEN: 1,
      pause: () => calls.push("pause"),
      resume: () => calls.push("resume"),
    } as unknown as WebSocket;
    const flow = new FrameFlow(socket, 4);
    const done: (() => void)[] = [];
    const work = () =>
      flow.track(
        new Promise<void>((resolve) => {
          done.push(resolve);
        }),
      );
    const all = [work(), work(), work()];
    expect(calls).toEqual([]);
    all.push(work());
    expect(calls).toEqual(["pause"]);
    done.shift()?.();
    await all[0];
    await Promise.resolve();
    expect(calls, "3 in flight: still above half").toEqual(["pause"]);
    done.shift()?.();
    await all[1];
    await Promise.resolve();
    expect(calls).toEqual(["pause", "resume"]);
    for (const d of done) d();
    await Promise.all(all);
  });
});

describe("shutdown", () => {
  it("is not held up by a client that never completes the close handshake", async () => {
    const c = await hello();
    c.ws.pause(); // reads nothing more: never sees, never answers the close frame
    const t0 = Date.now();
    await stack.gateway.close();
    const ms = Date.now() - t0;
    expect(ms, "ws alone would wait 30 s for the close handshake").toBeLessThan(5000);
    c.ws.terminate();
  });
});
