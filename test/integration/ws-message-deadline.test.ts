// A message a socket client started sending must arrive within PI_FLEET_REQUEST_TIMEOUT_MS, as a
// REST request must (ws/message-deadline.ts): a half-sent frame or a fragmented message whose
// final fragment never comes closes the socket with 1009 — on `/v1/ws` and on the RPC socket —
// while a client that sends its messages in pieces, each in time, or sends nothing at all, stays.
// Before, ws held such a message (up to ~54 MiB) with no deadline; a fragmented one survived even
// the ping check, since pongs may come between fragments.
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { FrameBoundaries, messageDeadline } from "../../apps/gateway/src/ws/message-deadline.ts";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const TIMEOUT_MS = 1000;
let stack: InProcessStack;
let session = "";

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "ws-deadline", {
    workerCount: 0,
    // Pings far apart: the deadline, not the liveness check, must cut these clients.
    env: { PI_FLEET_REQUEST_TIMEOUT_MS: String(TIMEOUT_MS), PI_FLEET_SSE_HEARTBEAT_MS: "60000" },
  });
  await stack.call("POST", "/v1/projects", { name: "deadline" });
  session = ((await stack.call("POST", "/v1/projects/deadline/sessions", {})).json as { id: string }).id;
});

afterAll(async () => {
  await stack?.close();
});

/** One client frame (masked, as clients must): `opcode` 1 text, 0 continuation, 9 ping, 10 pong. */
function frame(opcode: number, payload: Buffer, fin = true, announced = payload.length): Buffer {
  const len =
    announced < 126 ? [announced] : announced < 65536 ? [126, announced >> 8, announced & 255] : [127];
  const head = Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | (len[0] as number), ...len.slice(1)]);
  const ext = Buffer.alloc(announced >= 65536 ? 8 : 0);
  if (announced >= 65536) ext.writeBigUInt64BE(BigInt(announced));
  const mask = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] = (body[i] as number) ^ (mask[i % 4] as number);
  return Buffer.concat([head, ext, mask, body]);
}

const text = (value: unknown) => frame(1, Buffer.from(JSON.stringify(value)));

/** A WebSocket handshake by hand, so the test writes exactly the bytes it means to. */
interface RawClient {
  socket: Socket;
  /** Server bytes after the handshake (frames, unparsed). */
  received: () => Buffer;
  /** The close code the server sent (first close frame), when it did, and when the TCP closed. */
  closed: Promise<{ code: number | undefined; afterMs: number }>;
}

/** Opens `path`; `head` goes out with the upgrade request, in the same write. */
function rawClient(path: string, head = Buffer.alloc(0)): Promise<RawClient> {
  const port = Number(new URL(stack.gateway.url).port);
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const t0 = Date.now();
    const closed = new Promise<{ code: number | undefined; afterMs: number }>((done) =>
      socket.on("close", () => done({ code: closeCode(buf), afterMs: Date.now() - t0 })),
    );
    socket.on("error", () => {});
    socket.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      if (upgraded) return;
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end).toString("latin1");
      if (!head.startsWith("HTTP/1.1 101"))
        return reject(new Error(`upgrade refused: ${head.split("\r\n")[0]}`));
      upgraded = true;
      buf = buf.subarray(end + 4);
      resolve({ socket, received: () => buf, closed });
    });
    const request =
      `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\n\r\n`;
    socket.write(Buffer.concat([Buffer.from(request, "latin1"), head]));
  });
}

/** The code of the first close frame (server frames are unmasked) in `buf`, if any. */
function closeCode(buf: Buffer): number | undefined {
  let i = 0;
  while (i + 2 <= buf.length) {
    const opcode = (buf[i] as number) & 0x0f;
    let len = (buf[i + 1] as number) & 0x7f;
    let at = i + 2;
    if (len === 126) {
      len = buf.readUInt16BE(at);
      at += 2;
    } else if (len === 127) {
      len = Number(buf.readBigUInt64BE(at));
      at += 8;
    }
    if (opcode === 8) return len >= 2 ? buf.readUInt16BE(at) : undefined;
    i = at + len;
  }
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How `c` closed, or "open" when it did not within `ms`. */
const closedWithin = (c: RawClient, ms: number) =>
  Promise.race([c.closed, sleep(ms).then(() => "open" as const)]);
const rpcPath = () => `/v1/projects/deadline/sessions/${session}/rpc`;

describe("a socket message that stops arriving", () => {
  it("closes /v1/ws with 1009 when a frame stays half-sent", async () => {
    const c = await rawClient("/v1/ws");
    c.socket.write(text({ kind: "hello", protocol: 1 }));
    // A frame announcing 1 MiB, of which 64 KiB come.
    c.socket.write(frame(1, Buffer.alloc(64 * 1024, 0x20), true, 1024 * 1024).subarray(0, 64 * 1024 + 14));
    // The deadline plus the 1 s close grace; without it: open until the 60 s ping check.
    expect(await closedWithin(c, TIMEOUT_MS + 3000)).toMatchObject({ code: 1009 });
    c.socket.destroy();
  });

  it("sees the bytes that came with the upgrade request", async () => {
    // A hello and half a frame in the same write as the upgrade: ws reads them from the upgrade's
    // head, and so must the deadline, or it would lose track of the frames.
    const half = frame(1, Buffer.alloc(1000, 0x20)).subarray(0, 500);
    const c = await rawClient("/v1/ws", Buffer.concat([text({ kind: "hello", protocol: 1 }), half]));
    expect(await closedWithin(c, TIMEOUT_MS + 3000)).toMatchObject({ code: 1009 });
    expect(c.received().toString("latin1")).toContain('"kind":"welcome"');
    c.socket.destroy();
  });

  it("closes the RPC socket with 1009 when a fragmented message never ends, pongs or not", async () => {
    const c = await rawClient(rpcPath());
    c.socket.write(frame(1, Buffer.from('{"type":"get_state","pad":"'), false));
    // Control frames between fragments are allowed, and keep a ping check content: not a finish.
    const pongs = setInterval(() => {
      c.socket.write(frame(0, Buffer.from("xxxx"), false));
      c.socket.write(frame(10, Buffer.alloc(0)));
    }, 200);
    const closed = await closedWithin(c, TIMEOUT_MS + 3000);
    clearInterval(pongs);
    c.socket.destroy();
    expect(closed).toMatchObject({ code: 1009 });
  });

  it("leaves a client that sends each message in time, in pieces, or sends nothing", async () => {
    const ws = await rawClient("/v1/ws");
    const rpc = await rawClient(rpcPath());
    ws.socket.write(text({ kind: "hello", protocol: 1 }));
    // Three messages, each in three pieces over 600 ms: 1.8 s in all, each within the deadline.
    for (let n = 0; n < 3; n++) {
      const bytes = text({ kind: "ping", id: `p${n}` });
      const bytesRpc = text({ id: `s${n}`, type: "no_such_command" }); // answered at once
      for (const [i, j] of [
        [0, 1],
        [1, 8],
        [8, undefined],
      ] as const) {
        ws.socket.write(bytes.subarray(i, j));
        rpc.socket.write(bytesRpc.subarray(i, j));
        await sleep(200);
      }
    }
    await sleep(TIMEOUT_MS + 500); // idle: no message has started
    expect(ws.socket.destroyed || rpc.socket.destroyed).toBe(false);
    expect(ws.received().toString("latin1")).toContain('"id":"p2"');
    expect(rpc.received().toString("latin1")).toContain('"id":"s2"');
    ws.socket.destroy();
    rpc.socket.destroy();
  });
});

describe("FrameBoundaries", () => {
  const feedAll = (bytes: Buffer, step: number) => {
    const fb = new FrameBoundaries();
    const busy: boolean[] = [];
    for (let i = 0; i < bytes.length; i += step) {
      fb.feed(bytes.subarray(i, i + step));
      busy.push(fb.busy);
    }
    return { fb, busy };
  };

  it("follows frames of every length form, byte by byte or at once", () => {
    for (const size of [0, 125, 126, 65535, 65536, 200_000]) {
      const bytes = frame(2, Buffer.alloc(size, 1));
      for (const step of [1, 3, 7, bytes.length]) {
        const { fb, busy } = feedAll(bytes, step);
        expect(fb.busy, `size ${size} step ${step}`).toBe(false);
        expect(busy.slice(0, -1).every(Boolean), `busy until the last byte (size ${size})`).toBe(true);
      }
    }
  });

  it("keeps a fragmented message open across control frames until its final fragment", () => {
    const fb = new FrameBoundaries();
    expect(fb.feed(frame(1, Buffer.from("ab"), false))).toBe(true);
    expect(fb.busy).toBe(true);
    expect(fb.feed(Buffer.concat([frame(9, Buffer.from("p")), frame(0, Buffer.from("cd"), false)]))).toBe(
      false,
    );
    expect(fb.busy).toBe(true);
    fb.feed(frame(0, Buffer.from("ef"), true));
    expect(fb.busy).toBe(false);
    // A message that ends and another that starts in one chunk: the new one started in it.
    expect(
      fb.feed(Buffer.concat([frame(1, Buffer.from("x")), frame(1, Buffer.from("yz")).subarray(0, 4)])),
    ).toBe(true);
    expect(fb.busy).toBe(true);
  });
});

describe("messageDeadline", () => {
  /** A ws-like socket that records its close code, and a raw socket to feed and pause. */
  function fakes() {
    const ws = Object.assign(new EventEmitter(), {
      CONNECTING: 0,
      OPEN: 1,
      CLOSING: 2,
      CLOSED: 3,
      readyState: 1,
      closedWith: undefined as number | undefined,
      close(code: number) {
        this.closedWith = code;
        this.readyState = 2;
      },
      terminate() {
        this.readyState = 3;
      },
    });
    return { ws, raw: new EventEmitter() };
  }

  it("does not count the time the gateway does not read the socket", async () => {
    const { ws, raw } = fakes();
    const stop = messageDeadline(ws as never, raw as never, 200);
    try {
      // A frame of 1000 bytes, 100 of them sent; the gateway then stops reading for 300 ms.
      raw.emit("data", frame(2, Buffer.alloc(1000)).subarray(0, 108));
      await sleep(20);
      raw.emit("pause");
      await sleep(300);
      raw.emit("resume");
      await sleep(50);
      // ~70 ms of the 200 ms were spent reading: still open, and the message may finish.
      expect(ws.closedWith).toBeUndefined();
      raw.emit("data", frame(2, Buffer.alloc(1000)).subarray(108));
      await sleep(250);
      expect(ws.closedWith).toBeUndefined();
      // The next message that stalls is cut on time.
      raw.emit("data", frame(2, Buffer.alloc(1000)).subarray(0, 108));
      await sleep(300);
      expect(ws.closedWith).toBe(1009);
    } finally {
      stop();
    }
  });
});
