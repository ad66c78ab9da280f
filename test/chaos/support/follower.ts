// A client that follows one session's SSE stream through disconnects: it holds each connection
// for a random (seeded) time, closes it and resumes with `Last-Event-ID` on the next gateway.
// It records every event with an id, counts offsets that are not strictly increasing (duplicates
// or regressions) and frames without an id (stream_reset), and can be compared with a final
// `?after=0` replay.

import { openSse, type SseConnection, type SseEvent } from "@pi-fleet/testkit";
import { call, eventsUrl, sessionPath, TERMINAL_EVENTS } from "./api.ts";
import type { Rng } from "./prng.ts";

/** Orders two stream offsets `<ms>-<seq>` ("0" sorts first): negative, 0 or positive. */
export function compareOffsets(a: string, b: string): number {
  const parse = (id: string): [bigint, bigint] => {
    const dash = id.indexOf("-");
    return dash < 0 ? [BigInt(id), 0n] : [BigInt(id.slice(0, dash)), BigInt(id.slice(dash + 1))];
  };
  const [am, as] = parse(a);
  const [bm, bs] = parse(b);
  if (am !== bm) return am < bm ? -1 : 1;
  return as === bs ? 0 : as < bs ? -1 : 1;
}

/** One stream entry as a client saw it. */
export interface Entry {
  id: string;
  data: string;
  type: string;
  runId?: string;
  /** Parsed wire event. */
  event: Record<string, unknown>;
}

/** Options of {@link SessionFollower}. */
export interface FollowerOptions {
  /** Gateway base URLs to alternate between (read on every reconnect). */
  gateways: () => string[];
  project: string;
  session: string;
  rng: Rng;
  /** Connection hold time range (ms) before a deliberate disconnect. */
  holdMs?: [number, number];
}

function toEntry(e: SseEvent): Entry | undefined {
  if (e.id === undefined) return undefined;
  const event = (typeof e.json === "object" && e.json !== null ? e.json : {}) as Record<string, unknown>;
  const entry: Entry = { id: e.id, data: e.data, type: String(event.type ?? "?"), event };
  if (typeof event.runId === "string") entry.runId = event.runId;
  return entry;
}

/** Follows a session until stopped; see the module comment. */
export class SessionFollower {
  readonly project: string;
  readonly session: string;
  readonly entries: Entry[] = [];
  /** Offsets received that were not greater than the previous one. */
  readonly violations: string[] = [];
  /** Frames without an id (stream_reset / stream_lagging). */
  readonly idless: string[] = [];
  connections = 0;
  failedConnects = 0;
  private readonly opts: FollowerOptions;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private current: SseConnection | undefined;
  private readonly terminal = new Map<string, string>();

  constructor(opts: FollowerOptions) {
    this.opts = opts;
    this.project = opts.project;
    this.session = opts.session;
  }

  /** Last offset seen (undefined before the first entry). */
  get lastId(): string | undefined {
    return this.entries.at(-1)?.id;
  }

  /** Terminal event type seen for a run, if any. */
  terminalOf(runId: string): string | undefined {
    return this.terminal.get(runId);
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops following and waits for the loop to end. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.current?.close();
    await this.loop;
  }

  /** Resolves once every run in `runIds` has a terminal event here; throws after `timeoutMs`. */
  async waitTerminal(runIds: readonly string[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (runIds.some((r) => !this.terminal.has(r))) {
      if (Date.now() > deadline) {
        const missing = runIds.filter((r) => !this.terminal.has(r));
        throw new Error(
          `follower ${this.session}: no terminal event for ${missing.length} run(s) (${missing.join(", ")})`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Describes the current connection (for violation reports). */
  private where = "";

  private take(e: SseEvent): void {
    const entry = toEntry(e);
    if (!entry) {
      this.idless.push(e.data);
      return;
    }
    const last = this.lastId;
    if (last !== undefined && compareOffsets(entry.id, last) <= 0) {
      const frames = this.current?.events.slice(0, 4).map((x) => `${x.id ?? "-"}:${x.data.slice(9, 30)}`);
      this.violations.push(
        `${entry.id} ${entry.type} after ${last} (${this.where}; its first frames ${frames?.join(" | ")})`,
      );
      return;
    }
    this.entries.push(entry);
    if (entry.runId && TERMINAL_EVENTS.has(entry.type)) this.terminal.set(entry.runId, entry.type);
  }

  private async run(): Promise<void> {
    const [minHold, maxHold] = this.opts.holdMs ?? [300, 2500];
    let turn = this.opts.rng.int(0, 7);
    // Bounded: at most 10,000 connections (a follower lives for minutes at most).
    for (let n = 0; n < 10_000 && !this.stopped; n++) {
      const gateways = this.opts.gateways();
      const base = gateways[turn++ % gateways.length] ?? "";
      const last = this.lastId;
      let conn: SseConnection;
      try {
        conn = await openSse(
          eventsUrl(base, this.project, this.session, last === undefined ? "0" : undefined),
          { ...(last === undefined ? {} : { lastEventId: last }), connectTimeoutMs: 5000 },
        );
      } catch {
        this.failedConnects++;
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      if (conn.status !== 200) {
        this.failedConnects++;
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      this.connections++;
      this.current = conn;
      this.where = `connection ${this.connections} to ${base} from ${last ?? "after=0"}`;
      const until = Date.now() + this.opts.rng.int(minHold, maxHold);
      let i = 0;
      const drain = (): void => {
        while (i < conn.events.length) {
          const e = conn.events[i++];
          if (e) this.take(e);
        }
      };
      while (!this.stopped && !conn.ended && Date.now() < until) {
        const left = Math.max(1, Math.min(200, until - Date.now()));
        await conn.waitFor((_e, all) => all.length > i, left).catch(() => undefined);
        drain();
      }
      conn.close();
      await conn.closed;
      drain();
      this.current = undefined;
    }
  }
}

/** Current `lastOffset` of a session (`GET …/state`). */
export async function lastOffsetOf(base: string, project: string, session: string): Promise<string> {
  const res = await call<{ lastOffset: string }>(base, "GET", `${sessionPath(project, session)}/state`);
  if (res.status !== 200) throw new Error(`state of ${session}: ${res.status} ${res.text}`);
  return res.json.lastOffset;
}

/**
 * Replays a whole session with `?after=0` over SSE until the entry `lastOffset` arrives, and
 * returns the entries (id'd frames only) in order.
 */
export async function replaySession(
  base: string,
  project: string,
  session: string,
  timeoutMs = 15_000,
): Promise<Entry[]> {
  const last = await lastOffsetOf(base, project, session);
  const conn = await openSse(eventsUrl(base, project, session, "0"));
  try {
    if (conn.status !== 200) throw new Error(`replay of ${session}: ${conn.status} ${conn.errorBody}`);
    if (last !== "0") await conn.waitFor((e) => e.id === last, timeoutMs);
    const out: Entry[] = [];
    for (const e of conn.events) {
      const entry = toEntry(e);
      if (entry) out.push(entry);
      if (e.id === last) break;
    }
    return out;
  } finally {
    conn.close();
    await conn.closed;
  }
}

/** The Redis-clock time (ms) of a stream offset `<ms>-<seq>`. */
export function offsetMs(id: string): number {
  return Number(id.slice(0, id.indexOf("-")));
}
