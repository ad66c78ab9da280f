// The SSE response on the wire, read from a raw TCP socket (what proxies and minimal clients see):
// an HTTP/1.1 request gets well-formed chunked transfer encoding carrying `retry:` and the frames
// in order, and the terminating chunk when the gateway ends the stream; an HTTP/1.0 request (no
// chunked encoding) gets the frames unframed; a live-only request's first frame names the offset
// the stream starts after.
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

let stack: InProcessStack;
let path = "";

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "sse-framing");
  await stack.call("POST", "/v1/projects", { name: "framing" });
  const sid = ((await stack.call("POST", "/v1/projects/framing/sessions")).json as { id: string }).id;
  path = `/v1/projects/framing/sessions/${sid}/events`;
  await stack.call("POST", `/v1/projects/framing/sessions/${sid}/prompt`, { text: "[[reply:framed]]" });
});

afterAll(async () => {
  await stack?.close();
});

/** Sends a raw request and reads until `done(text)` or the connection closes. */
function rawRequest(request: string, done: (text: string) => boolean): Promise<string> {
  const url = new URL(stack.gateway.url);
  return new Promise((resolve, reject) => {
    let text = "";
    const socket = connect(Number(url.port), url.hostname, () => socket.write(request));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within 10 s; got ${JSON.stringify(text.slice(0, 500))}`));
    }, 10_000);
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      text += chunk;
      if (done(text)) {
        clearTimeout(timer);
        socket.destroy();
        resolve(text);
      }
    });
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(text);
    });
    socket.on("error", reject);
  });
}

/** Decodes a chunked body; throws on a malformed chunk. Returns the data and whether it ended. */
function dechunk(body: string): { data: string; complete: boolean } {
  let data = "";
  let at = 0;
  for (;;) {
    const eol = body.indexOf("\r\n", at);
    if (eol < 0) return { data, complete: false };
    const size = Number.parseInt(body.slice(at, eol), 16);
    if (!/^[0-9a-f]+$/.test(body.slice(at, eol)) || Number.isNaN(size)) {
      throw new Error(`bad chunk size line at ${at}: ${JSON.stringify(body.slice(at, eol + 2))}`);
    }
    if (size === 0) return { data, complete: true };
    if (body.length < eol + 2 + size + 2) return { data, complete: false };
    data += body.slice(eol + 2, eol + 2 + size);
    if (body.slice(eol + 2 + size, eol + 4 + size) !== "\r\n") throw new Error("chunk not followed by CRLF");
    at = eol + 4 + size;
  }
}

describe("SSE framing on the wire", () => {
  it("HTTP/1.1: every frame in well-formed chunks, the whole run's events in order", async () => {
    const text = await rawRequest(
      `GET ${path}?after=0 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`,
      (t) => t.includes("run_finished"),
    );
    const [head, body] = [text.slice(0, text.indexOf("\r\n\r\n")), text.slice(text.indexOf("\r\n\r\n") + 4)];
    expect(head).toMatch(/^HTTP\/1\.1 200/);
    expect(head.toLowerCase()).toContain("transfer-encoding: chunked");
    const { data } = dechunk(body);
    expect(data.startsWith("retry: 1000\n\n")).toBe(true);
    const types = [...data.matchAll(/"type":"(run_[a-z]+)"/g)].map((m) => m[1]);
    expect(types).toEqual(["run_queued", "run_started", "run_finished"]);
  });

  it("HTTP/1.1: a stream the gateway ends (shutdown) ends with the last chunk, after every frame", async () => {
    const own = await startInProcessStack(inject("redisUrl"), "sse-framing-end");
    let closing: Promise<void> | undefined;
    try {
      await own.call("POST", "/v1/projects", { name: "ending" });
      const sid = ((await own.call("POST", "/v1/projects/ending/sessions")).json as { id: string }).id;
      const url = new URL(own.gateway.url);
      const events = `/v1/projects/ending/sessions/${sid}/events`;
      const reading = new Promise<string>((resolve, reject) => {
        let text = "";
        const socket = connect(Number(url.port), url.hostname, () =>
          socket.write(`GET ${events}?after=0 HTTP/1.1\r\nHost: x\r\n\r\n`),
        );
        socket.setEncoding("latin1");
        socket.on("data", (chunk: string) => {
          text += chunk;
          // Every frame of the run is out: shut the gateway down, which ends the stream.
          if (closing === undefined && text.includes("run_finished")) closing = own.close();
        });
        socket.on("close", () => resolve(text));
        socket.on("error", reject);
      });
      await own.call("POST", `${events.replace(/\/events$/, "")}/prompt`, { text: "[[reply:ended]]" });
      const text = await reading;
      const { data, complete } = dechunk(text.slice(text.indexOf("\r\n\r\n") + 4));
      expect(complete).toBe(true);
      const types = [...data.matchAll(/"type":"(run_[a-z]+)"/g)].map((m) => m[1]);
      expect(types).toEqual(["run_queued", "run_started", "run_finished"]);
    } finally {
      await (closing ?? own.close());
    }
  });

  it("HTTP/1.0: the frames unframed, without chunked encoding", async () => {
    const text = await rawRequest(`GET ${path}?after=0 HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n`, (t) =>
      t.includes("run_finished"),
    );
    const head = text.slice(0, text.indexOf("\r\n\r\n"));
    const body = text.slice(text.indexOf("\r\n\r\n") + 4);
    expect(head).toMatch(/^HTTP\/1\.1 200/);
    expect(head.toLowerCase()).not.toContain("transfer-encoding");
    expect(body.startsWith("retry: 1000\n\nid: ")).toBe(true);
    expect(body).toContain('"type":"run_finished"');
  });

  it("live only: the first frame names the offset the stream starts after", async () => {
    const text = await rawRequest(`GET ${path} HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n`, (t) =>
      /retry: 1000\nid: [0-9]+-[0-9]+\n\n/.test(t),
    );
    const body = text.slice(text.indexOf("\r\n\r\n") + 4);
    const start = /^retry: 1000\nid: ([0-9]+-[0-9]+)\n\n/.exec(body)?.[1];
    // The stream's newest entry: a reconnect after it misses nothing written since the request.
    const state = (await stack.call("GET", path.replace(/\/events$/, "/state"))).json as {
      lastOffset: string;
    };
    expect(start).toBe(state.lastOffset);
  });
});
