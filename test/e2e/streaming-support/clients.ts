// Stream clients for the streaming e2e tests.
//
// `Follower` follows one session's stream over SSE or WebSocket, across connections: it records
// every entry (offset + the exact event JSON text + receipt time + connection number), frames
// without an offset (stream_reset / stream_lagging) and offsets that are not strictly increasing,
// and resumes wherever it is told (SSE: `?after=` or `Last-Event-ID`; WS: `subscribe.after`).
//
// `replaySession` reads a session's whole stream with `?after=0`, and `compareWithReplay` counts
// gaps, duplicates and differences between what a client got and that replay.

import { request as httpRequest, type IncomingMessage } from "node:http";
import { RUN_END_EVENT_TYPES } from "@pi-fleet/contracts";
import { connectRedis, createKeys } from "@pi-fleet/redis";
import { compareOffsets, EventLog } from "@pi-fleet/streams";
import { api } from "../../support/http.ts";

/** Automatic resumes in a row that deliver nothing before a follower gives up (a livelock). */
const MAX_FRUITLESS_RESUMES = 20;

/** One entry as a client received it. */
export interface Received {
  id: string;
  /** The wire event JSON text, exactly as the server sent it. */
  data: string;
  /** `type` of the wire event. */
  type: string;
  runId?: string;
  /** `Date.now()` at receipt. */
  at: number;
  /** 1-based connection number it arrived on. */
  conn: number;
}

/** A parsed SSE frame: `id` (absent for reset/lagging frames) and `data`. */
export interface SseFrame {
  id?: string;
  data: string;
}

/** Incremental SSE parser for pi-fleet's frames (`id:` / `data:` lines, comments, `retry:`). */
export class SseParser {
  private buf = "";
  private readonly onFrame: (f: SseFrame) => void;

  constructor(onFrame: (f: SseFrame) => void) {
    this.onFrame = onFrame;
  }

  feed(text: string): void {
    this.buf += text;
    for (;;) {
      const end = this.buf.indexOf("\n\n");
      if (end < 0) return;
      const block = this.buf.slice(0, end);
      this.buf = this.buf.slice(end + 2);
      let id: string | undefined;
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("id: ")) id = line.slice(4);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length > 0)
        this.onFrame(id === undefined ? { data: data.join("\n") } : { id, data: data.join("\n") });
    }
  }
}

function typeAndRun(data: string): { type: string; runId?: string } {
  try {
    const j = JSON.parse(data) as { type?: unknown; runId?: unknown };
    const out: { type: string; runId?: string } = { type: typeof j.type === "string" ? j.type : "?" };
    if (typeof j.runId === "string") out.runId = j.runId;
    return out;
  } catch {
    return { type: "?" };
  }
}

/** How a follower (re)connects. */
export interface ConnectOptions {
  /** Resume cursor; undefined = live only. */
  after?: string;
  /** SSE only: send the cursor as `Last-Event-ID` instead of `?after=`. */
  viaHeader?: boolean;
}

interface Connection {
  /** Resolves when the connection has ended (by us or by the server / network). */
  ended: Promise<void>;
  isEnded(): boolean;
  close(): void;
}

/** Follows one session's stream over SSE or WS; see the module comment. */
export class Follower {
  readonly kind: "sse" | "ws";
  readonly project: string;
  readonly session: string;
  readonly received: Received[] = [];
  /** Event JSON of frames without an offset (stream_reset / stream_lagging). */
  readonly idless: string[] = [];
  /** Offsets not greater than the previous one (duplicates or regressions). */
  readonly violations: string[] = [];
  /** WS `error` frames. */
  readonly errors: string[] = [];
  connections = 0;
  /** `stream_lagging` frames received (each one ends a connection). */
  lagged = 0;
  /**
   * When set, a connection the server ends (after `stream_lagging`, or for any other reason) is
   * resumed at once from the last offset on this base URL — what the protocol asks clients to do.
   * Each such end is counted in `serverEnds`.
   */
  autoResume: string | undefined;
  /** Connections the server (or the network) ended while `autoResume` was set. */
  serverEnds = 0;
  /** How connections ended (other than by `close()`), for diagnostics. */
  readonly endReasons: string[] = [];
  /** Errors of automatic resumes. */
  readonly resumeErrors: string[] = [];
  private closing = false;
  private fruitlessResumes = 0;
  private receivedAtResume = -1;
  private current: Connection | undefined;
  private waiters: (() => void)[] = [];

  constructor(kind: "sse" | "ws", project: string, session: string) {
    this.kind = kind;
    this.project = project;
    this.session = session;
  }

  /** Offset of the last entry received. */
  get lastId(): string | undefined {
    return this.received.at(-1)?.id;
  }

  /** True when the current connection has ended (or there is none). */
  get disconnected(): boolean {
    return this.current === undefined || this.current.isEnded();
  }

  /** Resolves when the current connection ends. */
  get ended(): Promise<void> {
    return this.current?.ended ?? Promise.resolve();
  }

  /** Resolves once `pred()` holds (re-checked on every frame and on disconnect); rejects after `timeoutMs`. */
  async until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `${this.kind} follower of ${this.session}: timed out after ${timeoutMs} ms waiting for ${what} ` +
            `(${this.received.length} entries, ${this.connections} connections, last ${this.lastId}, ` +
            `${this.disconnected ? "disconnected" : "connected"}, id-less frames: ${this.idless.slice(-3).join(" | ")})`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** True once the terminal event of `runId` arrived. */
  hasRunEnd(runId: string): boolean {
    return this.received.some((r) => r.runId === runId && RUN_END_EVENT_TYPES.has(r.type));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private take(id: string | undefined, data: string, conn: number): void {
    if (id === undefined) {
      this.idless.push(data);
      if (typeAndRun(data).type === "stream_lagging") this.lagged++;
      this.wake();
      return;
    }
    const last = this.lastId;
    if (last !== undefined && compareOffsets(id, last) <= 0) {
      this.violations.push(`${id} after ${last} (connection ${conn})`);
      this.wake();
      return;
    }
    this.received.push({ id, data, ...typeAndRun(data), at: Date.now(), conn });
    this.wake();
  }

  /** Closes the current connection (if any) and waits until it has ended. */
  async close(): Promise<void> {
    const c = this.current;
    if (!c) return;
    this.closing = true;
    c.close();
    await c.ended;
    this.closing = false;
  }

  /**
   * Opens a new connection to `base` (closing none: call `close()` first) and resolves once it is
   * established — SSE: a 200 response head; WS: the `subscribed` frame. Rejects otherwise.
   */
  async connect(base: string, opts: ConnectOptions = {}): Promise<void> {
    this.connections++;
    const conn = this.connections;
    const c =
      this.kind === "sse" ? await this.openSse(base, opts, conn) : await this.openWs(base, opts, conn);
    this.current = c;
    void c.ended.then(() => {
      const to = this.autoResume;
      if (this.closing || to === undefined || c !== this.current) return;
      this.serverEnds++;
      // A resume that brought nothing new, again and again: the client can never catch up.
      this.fruitlessResumes = this.received.length === this.receivedAtResume ? this.fruitlessResumes + 1 : 0;
      this.receivedAtResume = this.received.length;
      if (this.fruitlessResumes >= MAX_FRUITLESS_RESUMES) {
        this.resumeErrors.push(
          `no progress over ${MAX_FRUITLESS_RESUMES} consecutive resumes from ${this.lastId ?? opts.after} ` +
            `(last end: ${this.endReasons.at(-1) ?? "?"})`,
        );
        this.wake();
        return;
      }
      const after = this.lastId ?? opts.after;
      this.connect(to, { ...opts, ...(after === undefined ? {} : { after }) }).catch((err: unknown) => {
        this.resumeErrors.push(String(err));
        this.wake();
      });
    });
  }

  private openSse(base: string, opts: ConnectOptions, conn: number): Promise<Connection> {
    const { hostname, port } = new URL(base);
    const q = opts.after !== undefined && !opts.viaHeader ? `?after=${encodeURIComponent(opts.after)}` : "";
    const headers: Record<string, string> = { accept: "text/event-stream" };
    if (opts.after !== undefined && opts.viaHeader) headers["last-event-id"] = opts.after;
    return new Promise((resolve, reject) => {
      let done = false;
      let markEnded: () => void = () => {};
      const ended = new Promise<void>((r) => {
        markEnded = () => {
          if (done) return;
          done = true;
          r();
          this.wake();
        };
      });
      const req = httpRequest(
        {
          host: hostname,
          port: Number(port),
          path: `/v1/projects/${this.project}/sessions/${this.session}/events${q}`,
          headers,
          agent: false,
        },
        (res: IncomingMessage) => {
          if (res.statusCode !== 200) {
            let body = "";
            res.on("data", (c: Buffer) => {
              body += c.toString("utf8");
            });
            res.on("end", () => reject(new Error(`SSE ${res.statusCode}: ${body}`)));
            res.on("error", reject);
            return;
          }
          req.setTimeout(0); // the connect timeout ends with the response head
          res.setEncoding("utf8");
          const parser = new SseParser((f) => this.take(f.id, f.data, conn));
          res.on("data", (chunk: string) => parser.feed(chunk));
          res.on("end", () => {
            this.endReasons.push(`conn ${conn}: response ended`);
            markEnded();
          });
          res.on("close", markEnded);
          res.on("error", (err) => {
            this.endReasons.push(`conn ${conn}: ${err.message}`);
            markEnded();
          });
          resolve({ ended, isEnded: () => done, close: () => req.destroy() });
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error("SSE connect timeout")));
      req.on("error", (err) => {
        this.endReasons.push(`conn ${conn}: ${err.message}`);
        markEnded();
        reject(err);
      });
      req.on("close", markEnded);
      req.end();
    });
  }

  private openWs(base: string, opts: ConnectOptions, conn: number): Promise<Connection> {
    const ws = new WebSocket(`${base.replace(/^http/, "ws")}/v1/ws`);
    return new Promise((resolve, reject) => {
      let done = false;
      let established = false;
      let markEnded: () => void = () => {};
      const ended = new Promise<void>((r) => {
        markEnded = () => {
          if (done) return;
          done = true;
          r();
          this.wake();
        };
      });
      const timer = setTimeout(() => {
        if (!established) {
          ws.close();
          reject(new Error("WS subscribe timeout"));
        }
      }, 10_000);
      ws.addEventListener("open", () => {
        ws.send(JSON.stringify({ kind: "hello", protocol: 1 }));
        ws.send(
          JSON.stringify({
            kind: "subscribe",
            id: "sub",
            projectId: this.project,
            sessionId: this.session,
            ...(opts.after === undefined ? {} : { after: opts.after }),
          }),
        );
      });
      ws.addEventListener("message", (m: MessageEvent) => {
        const text = String(m.data);
        const frame = JSON.parse(text) as { kind: string; offset?: unknown; event?: unknown };
        if (frame.kind === "subscribed") {
          established = true;
          clearTimeout(timer);
          resolve({ ended, isEnded: () => done, close: () => ws.close() });
          return;
        }
        if (frame.kind === "error") {
          this.errors.push(text);
          if (!established) {
            clearTimeout(timer);
            reject(new Error(`WS error frame: ${text}`));
          }
          return;
        }
        if (frame.kind !== "event") return;
        // The event JSON is embedded verbatim: `…,"offset":"<id>","event":<data>}`.
        const at = text.indexOf(',"event":');
        const data = at < 0 ? JSON.stringify(frame.event) : text.slice(at + 9, -1);
        this.take(typeof frame.offset === "string" ? frame.offset : undefined, data, conn);
      });
      ws.addEventListener("close", (e: CloseEvent) => {
        this.endReasons.push(`conn ${conn}: WS close ${e.code} ${e.reason}`);
        clearTimeout(timer);
        markEnded();
        if (!established) reject(new Error("WS closed before subscribed"));
      });
      ws.addEventListener("error", () => {
        // a close event follows
      });
    });
  }
}

/** A session's whole retained stream, and how often the reader's connection was cut. */
export interface Replay {
  entries: { id: string; data: string }[];
  /** `stream_lagging` frames received. */
  laggingCuts: number;
  /** Connections the server ended before the replay was complete (with or without stream_lagging). */
  serverEnds: number;
}

/**
 * The whole retained stream of a session (`?after=0`, SSE) up to its current `lastOffset`. A
 * connection the server ends early (e.g. `stream_lagging`) is resumed from the last offset and
 * counted; a `stream_reset` is an error.
 */
export async function replaySession(base: string, project: string, session: string): Promise<Replay> {
  const state = await api(base).get<{ lastOffset: string }>(
    `/v1/projects/${project}/sessions/${session}/state`,
  );
  if (state.status !== 200) throw new Error(`state of ${session}: ${state.status} ${state.text}`);
  const last = state.json.lastOffset;
  if (last === "0") return { entries: [], laggingCuts: 0, serverEnds: 0 };
  const f = new Follower("sse", project, session);
  f.autoResume = base;
  await f.connect(base, { after: "0", viaHeader: true });
  try {
    await f.until(() => f.lastId === last || f.resumeErrors.length > 0, 30_000, `replay up to ${last}`);
  } finally {
    await f.close();
  }
  if (f.lastId !== last) {
    throw new Error(
      `replay of ${session} ended at ${f.lastId}, expected ${last}; id-less frames ${f.idless.join(" | ")}; ` +
        `resume errors ${f.resumeErrors.join(" | ")}`,
    );
  }
  const resets = f.idless.filter((d) => typeAndRun(d).type !== "stream_lagging");
  if (resets.length > 0) throw new Error(`replay of ${session} had id-less frames: ${resets.join(" | ")}`);
  if (f.violations.length > 0) throw new Error(`replay of ${session}: ${f.violations.join(", ")}`);
  return {
    entries: f.received.map((r) => ({ id: r.id, data: r.data })),
    laggingCuts: f.lagged,
    serverEnds: f.serverEnds,
  };
}

/** Differences between what a client received and the reference replay. */
export interface Comparison {
  /** Replay entries the client never got (after its first entry). */
  gaps: number;
  /** Entries received more than once or out of order. */
  duplicates: number;
  /** Entries whose data differs from the replay, or that the replay does not have. */
  mismatches: number;
  /** Whether the client's entries equal the replay exactly (same ids, same data, same order). */
  equal: boolean;
}

/** Compares a follower's entries with the replay (from the replay's first entry on). */
export function compareWithReplay(f: Follower, replay: readonly { id: string; data: string }[]): Comparison {
  const byId = new Map(replay.map((e) => [e.id, e.data]));
  const seen = new Set<string>();
  let mismatches = 0;
  for (const r of f.received) {
    if (byId.get(r.id) !== r.data) mismatches++;
    seen.add(r.id);
  }
  const gaps = replay.filter((e) => !seen.has(e.id)).length;
  const duplicates = f.violations.length + (f.received.length - seen.size);
  const equal =
    f.received.length === replay.length &&
    f.received.every((r, i) => r.id === replay[i]?.id && r.data === replay[i]?.data);
  return { gaps, duplicates, mismatches, equal };
}

/** p-th percentile (0–100) of `values` (nearest rank); NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

/** The Redis-clock time (ms) of a stream offset `<ms>-<seq>` (same host clock as the test). */
export function offsetMs(id: string): number {
  return Number(id.slice(0, id.indexOf("-")));
}

/**
 * A session's stream as stored in Redis (XRANGE pages through the product's EventLog, org
 * `default`): the ground truth, independent of the gateway's read path.
 */
export async function readStoredStream(
  redisUrl: string,
  prefix: string,
  project: string,
  session: string,
): Promise<{ id: string; data: string }[]> {
  const redis = await connectRedis(redisUrl, "command", "test-stream-reader");
  try {
    const log = new EventLog(redis, createKeys(prefix), 10_000);
    const out: { id: string; data: string }[] = [];
    for (let after = "0"; ; ) {
      const page = await log.range({ org: "default", project, session }, after, 1000);
      out.push(...page);
      const last = page.at(-1);
      if (!last || page.length < 1000) return out;
      after = last.id;
    }
  } finally {
    await redis.quit();
  }
}

/**
 * A short description of how two entry lists differ (undefined when equal): lengths and the
 * first index where id or data differ. Keeps failure messages readable for lists of 10⁴ entries.
 */
export function entriesDiff(
  got: readonly { id?: string; data: string }[],
  want: readonly { id?: string; data: string }[],
): string | undefined {
  const n = Math.max(got.length, want.length);
  for (let i = 0; i < n; i++) {
    const g = got[i];
    const w = want[i];
    if (g?.id !== w?.id || g?.data !== w?.data) {
      return (
        `${got.length} entries vs ${want.length} expected; first difference at #${i}: ` +
        `got ${g ? `${g.id} ${g.data.slice(0, 60)}` : "nothing"}, expected ${w ? `${w.id} ${w.data.slice(0, 60)}` : "nothing"}`
      );
    }
  }
  return undefined;
}
