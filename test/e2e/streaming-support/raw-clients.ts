// Clients that stop reading, on raw TCP sockets, for backpressure tests: nothing is read from the
// socket before `drain()` (it is paused before it connects), not even the WebSocket's 101 answer
// (its upgrade request and first frames go out in one write), so the gateway's unsent bytes pile
// up. Loopback still absorbs ~4 MB of a stalled client's stream (the sender's socket buffer grows
// to tcp_wmem's 4 MiB maximum), the same whether the client read its first 64 KiB or nothing. `drain()` later reads everything the gateway still sends and
// parses it: HTTP/1.1 chunked SSE frames, or WebSocket frames up to the close frame.

import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { type SseFrame, SseParser } from "./clients.ts";

/**
 * Connects a socket that reads nothing until resumed: paused before it connects, since Node
 * starts reading (up to the stream's 64 KiB high-water mark) as soon as the connection is up.
 */
function openSocket(base: string): Promise<{ socket: Socket; host: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    socket.pause();
    socket.once("connect", () => resolve({ socket, host: `${hostname}:${port}` }));
    socket.once("error", reject);
  });
}

/** Reads the socket until `done(bytes)` holds, EOF or `timeoutMs`; returns everything read. */
function readUntil(
  socket: Socket,
  initial: Buffer,
  done: (all: Buffer) => boolean,
  timeoutMs: number,
): Promise<{ bytes: Buffer; eof: boolean; timedOut: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [initial];
    let size = initial.length;
    let finished = false;
    const finish = (eof: boolean, timedOut: boolean) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.pause();
      resolve({ bytes: Buffer.concat(chunks, size), eof, timedOut });
    };
    const onData = (c: Buffer) => {
      chunks.push(c);
      size += c.length;
      if (done(Buffer.concat(chunks, size))) finish(false, false);
    };
    const onEnd = () => finish(true, false);
    const timer = setTimeout(() => finish(false, true), timeoutMs);
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.once("close", onEnd);
    socket.on("error", () => {});
    if (socket.readableEnded || socket.destroyed) finish(true, false);
    else if (done(Buffer.concat(chunks, size))) finish(false, false);
    else socket.resume();
  });
}

/** What a stalled SSE client finds once it reads again. */
export interface SseDrain {
  status: number;
  frames: SseFrame[];
  /** The chunked body's terminating chunk arrived (the server ended the response). */
  complete: boolean;
  /**
   * Bytes the server sent on the connection after the terminating chunk (should be none: the
   * response was over), and the SSE frames found in them.
   */
  afterEndBytes: number;
  framesAfterEnd: SseFrame[];
  /** The server closed the TCP connection. */
  eof: boolean;
  /** Bytes read in total. */
  bytes: number;
}

/**
 * Decodes a chunked body up to its terminating zero-size chunk (`complete`). Bytes after the
 * terminator are not part of this response; they are decoded as chunks too (`afterEnd`), so a
 * server that keeps writing after ending the body can be shown.
 */
function dechunk(body: Buffer): { data: Buffer; complete: boolean; afterEnd: Buffer; afterEndBytes: number } {
  const parts: Buffer[][] = [[], []];
  let part = 0;
  let complete = false;
  let terminatorEnd = -1;
  let at = 0;
  for (;;) {
    const eol = body.indexOf("\r\n", at);
    if (eol < 0) break;
    const size = Number.parseInt(body.subarray(at, eol).toString("latin1"), 16);
    if (Number.isNaN(size)) break;
    if (size === 0) {
      if (part === 1) break;
      complete = true;
      part = 1;
      at = eol + 4; // "0\r\n\r\n" (no trailers)
      terminatorEnd = at;
      continue;
    }
    if (eol + 2 + size + 2 > body.length) break;
    parts[part]?.push(body.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return {
    data: Buffer.concat(parts[0] ?? []),
    complete,
    afterEnd: Buffer.concat(parts[1] ?? []),
    afterEndBytes: terminatorEnd < 0 ? 0 : Math.max(0, body.length - terminatorEnd),
  };
}

/** An SSE request on a raw socket whose response is not read until `drain()`. */
export class StalledSse {
  readonly socket: Socket;

  private constructor(socket: Socket) {
    this.socket = socket;
  }

  /** Sends `GET path` and never reads (until `drain`). */
  static async open(base: string, path: string): Promise<StalledSse> {
    const { socket, host } = await openSocket(base);
    socket.on("error", () => {});
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nAccept: text/event-stream\r\n\r\n`);
    return new StalledSse(socket);
  }

  /**
   * Reads everything until the response ends (or the connection closes, or `timeoutMs`), then
   * for `settleMs` more to catch anything the server writes after the end of the response.
   */
  async drain(timeoutMs = 20_000, settleMs = 700): Promise<SseDrain> {
    const ended = (all: Buffer) => {
      const h = all.indexOf("\r\n\r\n");
      return h >= 0 && dechunk(all.subarray(h + 4)).complete;
    };
    const first = await readUntil(this.socket, Buffer.alloc(0), ended, timeoutMs);
    const { bytes, eof } = first.eof
      ? first
      : await readUntil(this.socket, first.bytes, () => false, settleMs);
    const h = bytes.indexOf("\r\n\r\n");
    const head = bytes.subarray(0, Math.max(0, h)).toString("latin1");
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
    const body = h < 0 ? Buffer.alloc(0) : bytes.subarray(h + 4);
    const { data, complete, afterEnd, afterEndBytes } = dechunk(body);
    const frames: SseFrame[] = [];
    new SseParser((f) => frames.push(f)).feed(data.toString("utf8"));
    const framesAfterEnd: SseFrame[] = [];
    new SseParser((f) => framesAfterEnd.push(f)).feed(afterEnd.toString("utf8"));
    return { status, frames, complete, eof, bytes: bytes.length, afterEndBytes, framesAfterEnd };
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** What a stalled WebSocket client finds once it reads again. */
export interface WsDrain {
  /** Text frames in order. */
  texts: string[];
  /** Close code and reason of the server's close frame, if one arrived. */
  closeCode?: number;
  closeReason?: string;
  /** The server closed the TCP connection. */
  eof: boolean;
  bytes: number;
}

/** A client frame: FIN + opcode, masked payload (RFC 6455 §5.3). */
function clientFrame(opcode: number, payload: Buffer): Buffer {
  const mask = randomBytes(4);
  const len = payload.length;
  const head =
    len < 126
      ? Buffer.from([0x80 | opcode, 0x80 | len])
      : Buffer.from([0x80 | opcode, 0x80 | 126, (len >> 8) & 0xff, len & 0xff]);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = (payload[i] ?? 0) ^ (mask[i % 4] ?? 0);
  return Buffer.concat([head, mask, body]);
}

/** Parses unmasked server frames; stops at an incomplete frame. */
function parseServerFrames(buf: Buffer): { frames: { fin: boolean; opcode: number; payload: Buffer }[] } {
  const frames: { fin: boolean; opcode: number; payload: Buffer }[] = [];
  let at = 0;
  for (;;) {
    if (at + 2 > buf.length) break;
    const b0 = buf[at] ?? 0;
    const b1 = buf[at + 1] ?? 0;
    let len = b1 & 0x7f;
    let off = at + 2;
    if (len === 126) {
      if (off + 2 > buf.length) break;
      len = buf.readUInt16BE(off);
      off += 2;
    } else if (len === 127) {
      if (off + 8 > buf.length) break;
      len = Number(buf.readBigUInt64BE(off));
      off += 8;
    }
    if (off + len > buf.length) break;
    frames.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload: buf.subarray(off, off + len) });
    at = off + len;
  }
  return { frames };
}

/** Splits the server's bytes into the upgrade answer's head and what follows it (its frames). */
function splitHead(bytes: Buffer): { head: string; rest: Buffer } | undefined {
  const h = bytes.indexOf("\r\n\r\n");
  if (h < 0) return undefined;
  return { head: bytes.subarray(0, h).toString("latin1"), rest: bytes.subarray(h + 4) };
}

/**
 * A WebSocket on a raw socket that sends its upgrade request and frames without waiting for the
 * answer, and reads nothing (not even the 101) until `drain()`.
 */
export class StalledWs {
  readonly socket: Socket;

  private constructor(socket: Socket) {
    this.socket = socket;
  }

  /**
   * Sends the upgrade of `GET /v1/ws` (no extensions) and `frames` as text in one write; resolves
   * once the kernel accepted them (the gateway may not have read them yet).
   */
  static async open(base: string, frames: readonly object[]): Promise<StalledWs> {
    const { socket, host } = await openSocket(base);
    socket.on("error", () => {});
    const key = randomBytes(16).toString("base64");
    const upgrade = Buffer.from(
      `GET /v1/ws HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    const body = frames.map((f) => clientFrame(0x1, Buffer.from(JSON.stringify(f))));
    await new Promise<void>((resolve, reject) =>
      socket.write(Buffer.concat([upgrade, ...body]), (err) => (err ? reject(err) : resolve())),
    );
    return new StalledWs(socket);
  }

  /**
   * Reads until the server's close frame arrives (or EOF, or `timeoutMs`).
   * @throws Error when the gateway did not answer the upgrade with 101
   */
  async drain(timeoutMs = 20_000): Promise<WsDrain> {
    const closed = (all: Buffer) => {
      const split = splitHead(all);
      return split !== undefined && parseServerFrames(split.rest).frames.some((f) => f.opcode === 0x8);
    };
    const read = await readUntil(this.socket, Buffer.alloc(0), closed, timeoutMs);
    const split = splitHead(read.bytes);
    if (!split || !/^HTTP\/1\.1 101/.test(split.head)) {
      throw new Error(
        `WS upgrade failed: ${(split?.head ?? read.bytes.toString("latin1")).split("\r\n")[0]}`,
      );
    }
    const { eof } = read;
    const out: WsDrain = { texts: [], eof, bytes: read.bytes.length };
    let partial: Buffer[] = [];
    for (const f of parseServerFrames(split.rest).frames) {
      if (f.opcode === 0x8) {
        out.closeCode = f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005;
        out.closeReason = f.payload.subarray(2).toString("utf8");
        break;
      }
      if (f.opcode === 0x1 || f.opcode === 0x0) {
        partial.push(f.payload);
        if (f.fin) {
          out.texts.push(Buffer.concat(partial).toString("utf8"));
          partial = [];
        }
      }
    }
    return out;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
