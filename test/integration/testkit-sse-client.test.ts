// Exercises the testkit SSE client against a hand-written loopback SSE server, so gateway tests
// can trust what it reports: ids, event names, JSON, comments, retry, resume header, errors.

import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { openSse } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

let server: Server;
let base: string;
let lastHeaders: IncomingHttpHeaders = {};
const open = new Set<ServerResponse>();

beforeAll(async () => {
  server = createServer((req, res) => {
    lastHeaders = req.headers;
    if (req.url === "/missing") {
      res.writeHead(404, { "content-type": "application/json" });
      res.end('{"error":"no such run"}');
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream" });
    if (req.url === "/finite") {
      res.write(": heartbeat\n\n");
      res.write("retry: 1500\n");
      res.write('id: 1\nevent: delta\ndata: {"n":1}\n\n');
      res.write(": heartbeat\n\n");
      // An event split across writes, with multi-line data (not JSON).
      res.write("id: 2\ndata: line one\n");
      setTimeout(() => {
        res.write("data: line two\n\n");
        res.end('id: 3\nevent: done\ndata: {"ok":true}\n\n');
      }, 20);
      return;
    }
    // "/forever": one event, then nothing until the client goes away.
    open.add(res);
    res.on("close", () => open.delete(res));
    res.write('id: 7\ndata: {"hello":1}\n\n');
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const res of open) res.destroy();
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections(); // fetch keeps sockets alive; don't wait for their idle timeout
  await closed;
});

describe("openSse", () => {
  it("parses ids, event names, JSON and multi-line data; counts comments; then ends", async () => {
    const conn = await openSse(`${base}/finite`, {
      headers: { authorization: "Bearer t" },
      lastEventId: "0",
    });
    expect(conn.status).toBe(200);
    expect(lastHeaders.accept).toBe("text/event-stream");
    expect(lastHeaders.authorization).toBe("Bearer t");
    expect(lastHeaders["last-event-id"]).toBe("0");

    expect(await conn.next()).toEqual({ id: "1", event: "delta", data: '{"n":1}', json: { n: 1 } });
    const second = await conn.next();
    expect(second).toEqual({ id: "2", data: "line one\nline two" });
    expect("json" in second).toBe(false);
    const done = await conn.waitFor((e) => e.event === "done");
    expect(done.json).toEqual({ ok: true });
    // waitFor does not move the next() cursor.
    expect((await conn.next()).id).toBe("3");

    await conn.closed;
    expect(conn.ended).toBe(true);
    expect(conn.error).toBeUndefined();
    expect(conn.events.map((e) => e.id)).toEqual(["1", "2", "3"]);
    expect(conn.comments).toBe(2);
    expect(conn.retryMs).toBe(1500);
    await expect(conn.next(1000)).rejects.toThrow(/ended/);
    await expect(conn.waitFor((e) => e.event === "never", 1000)).rejects.toThrow(/ended/);
  });

  it("waitFor sees already-received events and passes all events to the predicate", async () => {
    const conn = await openSse(`${base}/finite`);
    await conn.closed;
    const seen: number[] = [];
    const hit = await conn.waitFor((e, all) => {
      seen.push(all.length);
      return e.id === "2";
    });
    expect(hit.data).toBe("line one\nline two");
    expect(seen).toEqual([3, 3]);
  });

  it("times out next()/waitFor on an idle stream, and close() ends it", async () => {
    const conn = await openSse(`${base}/forever`);
    expect((await conn.next()).json).toEqual({ hello: 1 });
    const t0 = performance.now();
    await expect(conn.next(100)).rejects.toThrow(/timed out after 100ms/);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(90);
    await expect(conn.waitFor(() => false, 50)).rejects.toThrow(/timed out/);
    expect(conn.ended).toBe(false);

    const pending = conn.next(5000);
    conn.close();
    await conn.closed;
    expect(conn.ended).toBe(true);
    expect(conn.error).toBeUndefined();
    await expect(pending).rejects.toThrow(/ended/);
  });

  it("resolves non-200 responses with status and body text, and no events", async () => {
    const conn = await openSse(`${base}/missing`);
    expect(conn.status).toBe(404);
    expect(conn.errorBody).toBe('{"error":"no such run"}');
    expect(conn.events).toEqual([]);
    expect(conn.ended).toBe(true);
    await conn.closed;
    await expect(conn.next(50)).rejects.toThrow(/ended/);
  });

  it("rejects when nothing listens", async () => {
    const srv = createServer();
    await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", () => resolve()));
    const port = (srv.address() as AddressInfo).port;
    await new Promise<void>((resolve) => srv.close(() => resolve()));
    await expect(openSse(`http://127.0.0.1:${port}/x`)).rejects.toThrow();
  });
});
