/**
 * The commands `bench/stream.ts` sends to its child scripts (see rpc.ts), and what they answer.
 */
import type { SparseHistogram } from "./histogram.ts";

/** Where the session streams live (the gateway's key space). */
export interface StreamSpace {
  redisUrl: string;
  prefix: string;
  org: string;
  project: string;
  /** Approximate MAXLEN per session stream, as the gateway uses it. */
  maxLen: number;
}

/** What a client process saw during the measurement window. */
export interface ClientReport {
  /** Frames (events) received in the window, and the window's length on the client's clock. */
  frames: number;
  seconds: number;
  /** Append → receipt latency of every frame of the window. */
  latency: SparseHistogram;
  /** Since the connections opened: per-connection sequence jumps, repeats, and other anomalies. */
  gaps: number;
  dups: number;
  /** `stream_lagging` frames (the gateway cut a slow client) and `stream_reset` frames. */
  lagging: number;
  resets: number;
  /** Connections that ended without the bench closing them. */
  ended: number;
  /** Connections currently open. */
  open: number;
}

/** Result of opening a batch of connections. */
export interface OpenResult {
  opened: number;
  failed: number;
  /** The first few distinct failure messages. */
  errors: string[];
  ms: number;
}

export type ProducerApi = {
  init: { req: StreamSpace; res: null };
  /** Appends `count` events to `session` in batches (the catch-up backlog). */
  fill: { req: { session: string; count: number; batch: number }; res: { ms: number } };
  /** Appends round-robin over `sessions` at `eventsPerSec` (0 = stop), one event per append call. */
  rate: { req: { sessions: string[]; eventsPerSec: number }; res: null };
  /** Starts the measurement window. */
  mark: { req: null; res: null };
  report: {
    req: null;
    res: {
      produced: number;
      seconds: number;
      /** Events not sent because too many appends were in flight (the producer fell behind). */
      skipped: number;
      failed: number;
      firstError: string | undefined;
      /** Append call round trip (EVALSHA of append-events.lua). */
      append: SparseHistogram;
    };
  };
  /** Resolves once no append is in flight. */
  drain: { req: null; res: null };
};

/** One SSE connection to open: the request path on the gateway. */
export type SseClientsApi = {
  open: { req: { port: number; paths: string[]; concurrency: number; timeoutMs: number }; res: OpenResult };
  mark: { req: null; res: null };
  report: { req: null; res: ClientReport };
  /**
   * Opens one more connection at `path` (with `?after=0`) and times it until `expect` frames
   * arrived: from the request to the response head, the first frame and the last frame.
   */
  catchup: {
    req: { port: number; path: string; expect: number; timeoutMs: number };
    res: {
      connectMs: number;
      headMs: number;
      firstMs: number;
      lastMs: number;
      frames: number;
      inOrder: boolean;
    };
  };
  closeAll: { req: null; res: { closed: number } };
};

export type NaiveClientsApi = {
  /** One Redis connection per key, each looping `XREAD BLOCK 0 STREAMS <key> <last id>`. */
  open: {
    req: { redisUrl: string; keys: string[]; concurrency: number; timeoutMs: number };
    res: OpenResult;
  };
  mark: { req: null; res: null };
  report: { req: null; res: ClientReport };
  closeAll: { req: null; res: { closed: number } };
};
