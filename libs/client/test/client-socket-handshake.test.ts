// PiFleetSocket when the gateway refuses the WebSocket handshake with an HTTP answer: its own
// 401/403 (a PF_ERR_ body) stop the socket with PF_CLIENT_REJECTED (it used to retry for ever, the
// refusal looking like a plain close), a proxy's 401/403 (any other body) is retried, 429 waits
// for its Retry-After. With a socket of the `ws` package the status comes from
// its `unexpected-response` event (scripted here); with the global WebSocket (no status) the
// client asks the gateway with a plain GET of the same URL — checked against a loopback server.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer, WebSocket as WsWebSocket } from "ws";
import { createPiFleetClient, PiFleetApiError, type PiFleetSocket } from "../src/index.ts";
import { FakeWsPackageSocket, harness } from "./fake-socket.ts";

/** Settles with "pending" when `promise` has not settled within `ms`. */
function within<T>(promise: Promise<T>, ms = 1000): Promise<T | "pending"> {
  return Promise.race([promise, new Promise<"pending">((r) => setTimeout(() => r("pending"), ms))]);
}

const AUTH_BODY = { error: "unknown API key", code: "PF_ERR_AUTH_INVALID_KEY" };

describe("PiFleetSocket with a socket of the ws package", () => {
  it("stops for good on a 401 handshake: ready(), subscriptions and requests fail with PF_CLIENT_REJECTED", async () => {
    const { socket, next, sockets } = harness({}, FakeWsPackageSocket);
    const sub = socket.subscribe("p", "s");
    const request = socket.request("state", { projectId: "p", sessionId: "s" });
    const iterating = (async () => {
      for await (const _ of sub) {
        // nothing arrives
      }
    })();
    const ws = (await next(1)) as FakeWsPackageSocket;
    ws.refuse(401, {}, AUTH_BODY);
    const ready = await within(socket.ready().catch((e: unknown) => e));
    expect(ready).toMatchObject({
      name: "PiFleetSocketError",
      code: "PF_CLIENT_REJECTED",
      status: 401,
      message: expect.stringContaining("PF_ERR_AUTH_INVALID_KEY"),
    });
    expect(ws.terminated, "the handshake was ended").toBe(true);
    await expect(request).rejects.toMatchObject({ code: "PF_CLIENT_REJECTED" });
    await expect(iterating).rejects.toMatchObject({ code: "PF_CLIENT_REJECTED" });
    await new Promise((r) => setTimeout(r, 30));
    expect(sockets, "no reconnect").toHaveLength(1);
  });

  it("waits for the Retry-After of a 429 handshake, then connects", async () => {
    const { socket, next, reconnects } = harness({}, FakeWsPackageSocket);
    const ws = (await next(1)) as FakeWsPackageSocket;
    const refusedAt = Date.now();
    ws.refuse(429, { "retry-after": "0.2" }, { error: "too many streams", code: "PF_ERR_RATE_LIMITED" });
    const second = await next(2);
    expect(Date.now() - refusedAt).toBeGreaterThanOrEqual(180);
    expect(reconnects).toHaveLength(1);
    expect(reconnects[0]).toMatchObject({ reason: "status", delayMs: 200 });
    expect(reconnects[0]?.error).toBeInstanceOf(PiFleetApiError);
    expect(reconnects[0]?.error).toMatchObject({ status: 429, code: "PF_ERR_RATE_LIMITED" });
    second.welcome("c2");
    expect(await socket.ready()).toMatchObject({ connectionId: "c2" });
    socket.close();
  });

  it("backs off on a 401/403 that is not the gateway's (no PF_ERR_ code: a proxy's), then connects", async () => {
    const { socket, next, reconnects, sockets } = harness({}, FakeWsPackageSocket);
    const first = (await next(1)) as FakeWsPackageSocket;
    first.refuse(403, {}, "<html><body>403 Forbidden</body></html>");
    await new Promise((r) => setTimeout(r, 30));
    // It used to stop for good here with PF_CLIENT_REJECTED.
    expect(sockets, "reconnected").toHaveLength(2);
    (sockets[1] as FakeWsPackageSocket).refuse(401, {}, { error: "login required", code: "SSO_REQUIRED" });
    const third = await within(next(3));
    if (third === "pending") throw new Error("no third connection");
    expect(reconnects.map((r) => [r.reason, (r.error as PiFleetApiError).status])).toEqual([
      ["status", 403],
      ["status", 401],
    ]);
    third.welcome("c3");
    expect(await socket.ready()).toMatchObject({ connectionId: "c3" });
    socket.close();
  });

  it("still backs off as before on a close before the handshake without an HTTP answer", async () => {
    const { socket, next, reconnects } = harness({}, FakeWsPackageSocket);
    const ws = await next(1);
    ws.drop(1006);
    await next(2);
    expect(reconnects[0]).toMatchObject({ reason: "closed", attempt: 0 });
    socket.close();
  });
});

describe("PiFleetSocket against a loopback gateway stand-in", () => {
  let server: Server | undefined;
  let socket: PiFleetSocket | undefined;

  afterEach(async () => {
    socket?.close();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
  });

  /** A gateway stand-in answering every request (upgrade or not) with `answer(req)`. */
  async function gateway(answer: (req: IncomingMessage) => { status: number; body: unknown }) {
    const seen: { upgrade: boolean; authorization: string | undefined }[] = [];
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      seen.push({ upgrade: req.headers.upgrade === "websocket", authorization: req.headers.authorization });
      const { status, body } = answer(req);
      res.writeHead(status, { "content-type": "application/json", "retry-after": "1" });
      res.end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    return { seen, baseUrl: `http://127.0.0.1:${port}` };
  }

  it("asks the gateway why the handshake failed and stops on its 401", async () => {
    const { seen, baseUrl } = await gateway(() => ({ status: 401, body: AUTH_BODY }));
    const client = createPiFleetClient({ baseUrl, apiKey: "revoked" });
    socket = client.ws({ reconnect: { initialDelayMs: 1, maxDelayMs: 5 } });
    const ready = await within(
      socket.ready().catch((e: unknown) => e),
      3000,
    );
    expect(ready).toMatchObject({ code: "PF_CLIENT_REJECTED", status: 401 });
    // One handshake (Node's WebSocket sends its upgrade twice on a 401), one probe, nothing after.
    const count = seen.length;
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toHaveLength(count);
    expect(seen.at(-1)).toEqual({ upgrade: false, authorization: "Bearer revoked" });
    expect(seen.slice(0, -1).every((s) => s.upgrade && s.authorization === "Bearer revoked")).toBe(true);
  });

  it("with a real ws-package socket: reads the 401 and its body from unexpected-response, no probe", async () => {
    const { seen, baseUrl } = await gateway(() => ({
      status: 403,
      body: { error: "no", code: "PF_ERR_AUTH_FORBIDDEN" },
    }));
    const client = createPiFleetClient({
      baseUrl,
      apiKey: "viewer",
      webSocket: (url, headers) => new WsWebSocket(url, { headers }) as unknown as WebSocket,
    });
    socket = client.ws({ reconnect: { initialDelayMs: 1, maxDelayMs: 5 } });
    const ready = await within(
      socket.ready().catch((e: unknown) => e),
      3000,
    );
    expect(ready).toMatchObject({
      code: "PF_CLIENT_REJECTED",
      status: 403,
      message: expect.stringContaining("PF_ERR_AUTH_FORBIDDEN"),
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual([{ upgrade: true, authorization: "Bearer viewer" }]);
  });

  it("keeps trying when a proxy in front answers the probe 403 (not the gateway's body), and connects once it lets through", async () => {
    // A proxy that refuses the first upgrades and every plain GET with its own 403 page; then the
    // upgrades reach a gateway stand-in that welcomes.
    const seen: { upgrade: boolean }[] = [];
    const proxy403 = "<html><body>403 Forbidden</body></html>";
    const wss = new WebSocketServer({ noServer: true });
    wss.on("connection", (ws) => {
      ws.on("message", () => ws.send(JSON.stringify({ kind: "welcome", protocol: 1, connectionId: "c-ok" })));
    });
    server = createServer((_req, res) => {
      seen.push({ upgrade: false });
      res.writeHead(403, { "content-type": "text/html" });
      res.end(proxy403);
    });
    server.on("upgrade", (req: IncomingMessage, conn: Duplex, head: Buffer) => {
      seen.push({ upgrade: true });
      if (seen.filter((s) => s.upgrade).length <= 2) {
        conn.end(
          `HTTP/1.1 403 Forbidden\r\ncontent-type: text/html\r\ncontent-length: ${proxy403.length}\r\nconnection: close\r\n\r\n${proxy403}`,
        );
        return;
      }
      wss.handleUpgrade(req, conn, head, (ws) => wss.emit("connection", ws, req));
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const client = createPiFleetClient({ baseUrl: `http://127.0.0.1:${port}`, apiKey: "fine" });
    socket = client.ws({ reconnect: { initialDelayMs: 1, maxDelayMs: 5 } });
    try {
      // It used to stop for good with PF_CLIENT_REJECTED (403) after the first probe.
      expect(await within(socket.ready(), 3000)).toMatchObject({ connectionId: "c-ok" });
      expect(seen.filter((s) => !s.upgrade).length, "probed").toBeGreaterThanOrEqual(1);
    } finally {
      socket.close();
      for (const ws of wss.clients) ws.terminate();
      wss.close();
    }
  });

  it("keeps backing off when the probe says the credentials are fine (a 429 of the stream cap shows only to ws)", async () => {
    const { seen, baseUrl } = await gateway((req) =>
      req.headers.upgrade === "websocket"
        ? { status: 429, body: { error: "too many streams", code: "PF_ERR_RATE_LIMITED" } }
        : { status: 404, body: { error: "not found", code: "PF_ERR_NOT_FOUND" } },
    );
    const client = createPiFleetClient({ baseUrl, apiKey: "fine" });
    socket = client.ws({ reconnect: { initialDelayMs: 1, maxDelayMs: 5 } });
    expect(await within(socket.ready(), 300)).toBe("pending");
    expect(seen.filter((s) => s.upgrade).length).toBeGreaterThanOrEqual(2);
  });
});
