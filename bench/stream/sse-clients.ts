/**
 * Child process of `bench/stream.ts`: many SSE subscribers in one process. Each is a plain
 * `node:http` GET with its own socket (`agent: false`), read by a minimal parser for the
 * gateway's frames (`retry:`, `id:` + `data:`, `:` comments). A connection counts as open once
 * `retry:` arrived — the gateway sends it only after the session subscription is live. Every
 * `data` chunk is stamped once on the shared monotonic clock; a frame's latency is that stamp
 * minus the append time the producer put into the event.
 */
import { type ClientRequest, request } from "node:http";
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
  req: ClientRequest | undefined;
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

function onData(conn: Conn, chunk: Buffer): void {
  const now = nowUs();
  const text = conn.pending.length > 0 ? conn.pending + chunk.toString("latin1") : chunk.toString("latin1");
  let start = 0;
  for (;;) {
    const end = text.indexOf("\n\n", start);
    if (end < 0) break;
    frame(conn, text, start, end, now);
    start = end + 2;
  }
  conn.pending = start < text.length ? text.slice(start) : "";
}

/** Opens one SSE connection; resolves once `retry:` arrived (the subscription is live). */
function openOne(port: number, path: string, timeoutMs: number, catchup?: CatchupState): Promise<Conn> {
  return new Promise<Conn>((resolve, reject) => {
    const conn: Conn = {
      req: undefined,
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
      conn.req?.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`no retry: frame within ${timeoutMs} ms`)), timeoutMs);
    conn.onOpen = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(conn);
    };
    const req = request({
      host: "127.0.0.1",
      port,
      path,
      agent: false,
      headers: { accept: "text/event-stream" },
    });
    conn.req = req;
    conns.add(conn);
    if (catchup) {
      req.once("socket", (socket) => {
        socket.once("connect", () => {
          catchup.connectUs = nowUs();
        });
      });
    }
    req.on("response", (res) => {
      if (catchup) catchup.headUs = nowUs();
      if (res.statusCode !== 200) {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (s: string) => {
          body += s;
        });
        res.on("end", () => fail(new Error(`HTTP ${res.statusCode}: ${body.slice(0, 200)}`)));
        return;
      }
      res.on("data", (chunk: Buffer) => onData(conn, chunk));
      res.on("close", () => {
        if (conns.delete(conn) && !conn.closing && conn.opened && !conn.catchup) ended++;
        fail(new Error("the response ended before retry:"));
      });
    });
    req.on("error", (err) => {
      if (conn.opened) {
        if (conns.delete(conn) && !conn.closing && !conn.catchup) ended++;
        return;
      }
      fail(err);
    });
    req.end();
  });
}

function close(conn: Conn): void {
  conn.closing = true;
  conns.delete(conn);
  conn.req?.destroy();
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
