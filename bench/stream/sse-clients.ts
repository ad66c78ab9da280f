/**
 * Child process of `bench/stream.ts`: many SSE subscribers in one process. Each is an HTTP/1.1
 * GET written on its own `node:net` socket and read by a minimal response parser (status line,
 * headers, chunked body: {@link ChunkedResponse}) and a minimal parser for the gateway's frames
 * (`retry:`, `id:` + `data:`, `:` comments) — about 10 % less client CPU than `node:http`'s
 * IncomingMessage streams, CPU the gateway shares the cores with. A connection counts as open once
 * `retry:` arrived — the gateway sends it only after the session subscription is live. Every
 * `data` chunk is stamped once on the shared monotonic clock; a frame's latency is that stamp
 * minus the append time the producer put into the event.
 */
import { connect, type Socket } from "node:net";
import { readBenchFields } from "./event.ts";
import { Histogram } from "./histogram.ts";
import type { ClientReport, OpenResult, SseClientsApi } from "./protocol.ts";
import { serve } from "./rpc.ts";
import { errorMessage, mapLimit, nowUs } from "./util.ts";

interface CatchupState {
  expect: number;
  t0: number;
  connectUs: number;
  headUs: number;
  firstUs: number;
  lastUs: number;
  frames: number;
  inOrder: boolean;
  done: () => void;
}

interface Conn {
  socket: Socket | undefined;
  pending: string;
  lastSeq: number;
  opened: boolean;
  closing: boolean;
  onOpen: (() => void) | undefined;
  catchup: CatchupState | undefined;
}

const conns = new Set<Conn>();
const latency = new Histogram();
let measuring = false;
let windowStartUs = nowUs();
let windowFrames = 0;
let gaps = 0;
let dups = 0;
let lagging = 0;
let resets = 0;
let ended = 0;

function frame(conn: Conn, text: string, start: number, end: number, now: number): void {
  if (text.startsWith("id: ", start)) {
    const f = readBenchFields(text, start, end);
    if (!f) return;
    const cu = conn.catchup;
    if (cu) {
      if (cu.frames === 0) cu.firstUs = now;
      if (f.seq !== cu.frames) cu.inOrder = false;
      cu.frames++;
      if (cu.frames === cu.expect) {
        cu.lastUs = now;
        cu.done();
      }
      return;
    }
    if (conn.lastSeq >= 0 && f.seq !== conn.lastSeq + 1) {
      if (f.seq <= conn.lastSeq) dups++;
      else gaps++;
    }
    conn.lastSeq = f.seq;
    if (measuring) {
      windowFrames++;
      latency.record(now - f.tUs);
    }
  } else if (text.startsWith("retry:", start)) {
    if (!conn.opened) {
      conn.opened = true;
      conn.onOpen?.();
    }
  } else if (text.startsWith("data: ", start)) {
    const body = text.slice(start, end);
    if (body.includes('"stream_lagging"')) lagging++;
    else if (body.includes('"stream_reset"')) {
      resets++;
      conn.lastSeq = -1;
    }
  }
  // ":" comments (heartbeats) are ignored.
}

function onText(conn: Conn, body: string, now: number): void {
  const text = conn.pending.length > 0 ? conn.pending + body : body;
  let start = 0;
  for (;;) {
    const end = text.indexOf("\n\n", start);
    if (end < 0) break;
    frame(conn, text, start, end, now);
    start = end + 2;
  }
  conn.pending = start < text.length ? text.slice(start) : "";
}

/**
 * Incremental reader of one HTTP/1.1 response on a raw socket: the status line and headers once,
 * then the chunked body (the gateway's SSE responses are chunked), handing decoded body text to
 * `onBody`. Works on latin1 strings, where one character is one byte, so chunk sizes count
 * characters. Cheaper per frame than `node:http`'s IncomingMessage stream.
 */
class ChunkedResponse {
  private head = "";
  private headDone = false;
  private rest = "";
  /** Bytes left in the current chunk; -1 = a size line is next; -2 = the CRLF after a chunk. */
  private left = -1;
  status = 0;
  chunked = false;
  private readonly onHead: () => void;
  private readonly onBody: (text: string) => void;
  constructor(onHead: () => void, onBody: (text: string) => void) {
    this.onHead = onHead;
    this.onBody = onBody;
  }

  /** Feeds received bytes (as latin1). */
  push(data: string): void {
    let text = data;
    if (!this.headDone) {
      this.head += text;
      const end = this.head.indexOf("\r\n\r\n");
      if (end < 0) return;
      this.headDone = true;
      text = this.head.slice(end + 4);
      const headers = this.head.slice(0, end).toLowerCase();
      this.status = Number(headers.slice(9, 12));
      this.chunked = headers.includes("\r\ntransfer-encoding: chunked");
      this.head = "";
      this.onHead();
    }
    if (!this.chunked) {
      if (text.length > 0) this.onBody(text);
      return;
    }
    text = this.rest.length > 0 ? this.rest + text : text;
    this.rest = "";
    let at = 0;
    let body = "";
    while (at < text.length) {
      if (this.left === -2) {
        if (text.length - at < 2) break;
        at += 2;
        this.left = -1;
      } else if (this.left === -1) {
        const eol = text.indexOf("\r\n", at);
        if (eol < 0) break;
        this.left = Number.parseInt(text.slice(at, eol), 16);
        at = eol + 2;
        if (this.left === 0) return; // last chunk: the stream ended
      } else {
        const n = Math.min(this.left, text.length - at);
        body += text.slice(at, at + n);
        at += n;
        this.left -= n;
        if (this.left === 0) this.left = -2;
      }
    }
    this.rest = text.slice(at);
    if (body.length > 0) this.onBody(body);
  }
}

/** Opens one SSE connection; resolves once `retry:` arrived (the subscription is live). */
function openOne(port: number, path: string, timeoutMs: number, catchup?: CatchupState): Promise<Conn> {
  return new Promise<Conn>((resolve, reject) => {
    const conn: Conn = {
      socket: undefined,
      pending: "",
      lastSeq: -1,
      opened: false,
      closing: false,
      onOpen: undefined,
      catchup,
    };
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conns.delete(conn);
      conn.socket?.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`no retry: frame within ${timeoutMs} ms`)), timeoutMs);
    conn.onOpen = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(conn);
    };
    const socket = connect({ host: "127.0.0.1", port, noDelay: true });
    conn.socket = socket;
    conns.add(conn);
    let errorBody = "";
    const response = new ChunkedResponse(
      () => {
        if (catchup) catchup.headUs = nowUs();
      },
      (text) => {
        if (response.status === 200) onText(conn, text, nowUs());
        else errorBody += text;
      },
    );
    socket.setEncoding("latin1");
    socket.once("connect", () => {
      if (catchup) catchup.connectUs = nowUs();
      socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`);
    });
    socket.on("data", (data: string) => response.push(data));
    socket.on("close", () => {
      if (response.status !== 0 && response.status !== 200) {
        fail(new Error(`HTTP ${response.status}: ${errorBody.slice(0, 200)}`));
        return;
      }
      if (conns.delete(conn) && !conn.closing && conn.opened && !conn.catchup) ended++;
      fail(new Error("the response ended before retry:"));
    });
    socket.on("error", (err) => {
      if (!conn.opened) fail(err);
    });
  });
}

function close(conn: Conn): void {
  conn.closing = true;
  conns.delete(conn);
  conn.socket?.destroy();
}

serve<SseClientsApi>({
  async open({ port, paths, concurrency, timeoutMs }): Promise<OpenResult> {
    const t0 = nowUs();
    let opened = 0;
    let failed = 0;
    const errors = new Set<string>();
    await mapLimit(paths, concurrency, async (path) => {
      try {
        await openOne(port, path, timeoutMs);
        opened++;
      } catch (err) {
        failed++;
        if (errors.size < 5) errors.add(errorMessage(err));
      }
    });
    return { opened, failed, errors: [...errors], ms: (nowUs() - t0) / 1000 };
  },
  async mark() {
    measuring = true;
    windowStartUs = nowUs();
    windowFrames = 0;
    latency.reset();
    return null;
  },
  async report(): Promise<ClientReport> {
    const seconds = (nowUs() - windowStartUs) / 1e6;
    measuring = false;
    return {
      frames: windowFrames,
      seconds,
      latency: latency.toSparse(),
      gaps,
      dups,
      lagging,
      resets,
      ended,
      open: conns.size,
    };
  },
  async catchup({ port, path, expect, timeoutMs }) {
    let done: () => void = () => {};
    const finished = new Promise<void>((resolve) => {
      done = resolve;
    });
    const state: CatchupState = {
      expect,
      t0: nowUs(),
      connectUs: 0,
      headUs: 0,
      firstUs: 0,
      lastUs: 0,
      frames: 0,
      inOrder: true,
      done,
    };
    const conn = await openOne(port, `${path}?after=0`, timeoutMs, state);
    const left = Math.max(1, timeoutMs - (nowUs() - state.t0) / 1000);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        finished,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`catch-up: ${state.frames}/${expect} frames after ${timeoutMs} ms`)),
            left,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
      close(conn);
    }
    return {
      connectMs: (state.connectUs - state.t0) / 1000,
      headMs: (state.headUs - state.t0) / 1000,
      firstMs: (state.firstUs - state.t0) / 1000,
      lastMs: (state.lastUs - state.t0) / 1000,
      frames: state.frames,
      inOrder: state.inOrder,
    };
  },
  async closeAll() {
    const all = [...conns];
    for (const conn of all) close(conn);
    return { closed: all.length };
  },
});
