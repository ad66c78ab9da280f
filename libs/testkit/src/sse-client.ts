// Minimal Server-Sent Events client for tests and benches: fetch + eventsource-parser, with
// helpers to await the next event or a matching one. No reconnection — tests reconnect explicitly
// (passing `lastEventId`) so that resume behaviour is visible and assertable.

import { createParser, type EventSourceMessage } from "eventsource-parser";

/** One SSE event. `json` is `JSON.parse(data)` when `data` is valid JSON, else absent. */
export interface SseEvent {
  id?: string;
  event?: string;
  data: string;
  json?: unknown;
}

/** Options for {@link openSse}. */
export interface OpenSseOptions {
  /** Extra request headers (Accept: text/event-stream is always sent). */
  headers?: Record<string, string>;
  /** Sent as the `Last-Event-ID` header to resume a stream. */
  lastEventId?: string;
  /** HTTP method, default GET (POST lets this client read streaming APIs such as chat completions). */
  method?: string;
  /** Request body (e.g. JSON text); set a content-type in `headers`. */
  body?: string;
  /** Max ms to wait for response headers before rejecting; default 10000. */
  connectTimeoutMs?: number;
}

/**
 * An open (or finished) SSE response. `events` holds every event received so far in order;
 * `comments` counts comment lines (heartbeats), which are not events. For a non-200 response
 * `status` is set, `errorBody` holds the body text, `events` stays empty and `closed` is resolved.
 * `ended` turns true when the stream ends for any reason; `error` is set if reading failed
 * for a reason other than `close()`.
 */
export interface SseConnection {
  readonly status: number;
  readonly headers: Headers;
  readonly events: SseEvent[];
  readonly comments: number;
  readonly retryMs: number | undefined;
  readonly errorBody: string | undefined;
  readonly ended: boolean;
  readonly error: unknown;
  /**
   * Resolves the next event not yet returned by `next()` (a cursor over `events`). Rejects with
   * an Error after `timeoutMs` (default 5000) or when the stream ends with no unseen event left.
   */
  next(timeoutMs?: number): Promise<SseEvent>;
  /**
   * Resolves the first event (earliest first, including already received ones) for which
   * `pred(event, events)` is true; does not move the `next()` cursor. Rejects with an Error after
   * `timeoutMs` (default 5000) or when the stream ends without a match.
   */
  waitFor(pred: (e: SseEvent, all: SseEvent[]) => boolean, timeoutMs?: number): Promise<SseEvent>;
  /** Aborts the request; `closed` resolves once the reader has stopped. Idempotent. */
  close(): void;
  readonly closed: Promise<void>;
}

function toSseEvent(msg: EventSourceMessage): SseEvent {
  const e: SseEvent = { data: msg.data };
  if (msg.id !== undefined) e.id = msg.id;
  if (msg.event !== undefined) e.event = msg.event;
  try {
    e.json = JSON.parse(msg.data);
  } catch {
    // Not JSON: leave `json` unset.
  }
  return e;
}

class Connection implements SseConnection {
  status = 0;
  headers: Headers = new Headers();
  events: SseEvent[] = [];
  comments = 0;
  retryMs: number | undefined;
  errorBody: string | undefined;
  ended = false;
  error: unknown;
  closed: Promise<void> = Promise.resolve();
  abort: AbortController = new AbortController();
  private cursor = 0;
  private listeners = new Set<() => void>();

  notify(): void {
    for (const l of [...this.listeners]) l();
  }

  close(): void {
    this.abort.abort();
  }

  /** Calls `check` now and on every new event / end until it returns true or the timeout hits. */
  private wait<T>(timeoutMs: number, what: string, check: () => { value: T } | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const listener = (): void => {
        const hit = check();
        if (hit) {
          cleanup();
          resolve(hit.value);
        } else if (this.ended) {
          cleanup();
          reject(
            new Error(`SSE stream ended while waiting for ${what} (${this.events.length} events received)`),
          );
        }
      };
      const cleanup = (): void => {
        if (timer) clearTimeout(timer);
        this.listeners.delete(listener);
      };
      timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(
            `timed out after ${timeoutMs}ms waiting for ${what} (${this.events.length} events received)`,
          ),
        );
      }, timeoutMs);
      this.listeners.add(listener);
      listener();
    });
  }

  next(timeoutMs = 5000): Promise<SseEvent> {
    return this.wait(timeoutMs, "the next event", () => {
      const e = this.events[this.cursor];
      if (!e) return undefined;
      this.cursor++;
      return { value: e };
    });
  }

  waitFor(pred: (e: SseEvent, all: SseEvent[]) => boolean, timeoutMs = 5000): Promise<SseEvent> {
    let scanned = 0;
    return this.wait(timeoutMs, "a matching event", () => {
      for (; scanned < this.events.length; scanned++) {
        const e = this.events[scanned];
        if (e && pred(e, this.events)) return { value: e };
      }
      return undefined;
    });
  }
}

/**
 * Opens an SSE stream at `url` and resolves once response headers arrive (events keep
 * accumulating in the background). Rejects if the request fails or no headers arrive within
 * `connectTimeoutMs`; a non-200 status is not a rejection (see {@link SseConnection}).
 */
export async function openSse(url: string, opts: OpenSseOptions = {}): Promise<SseConnection> {
  const conn = new Connection();
  const headers: Record<string, string> = { accept: "text/event-stream", ...opts.headers };
  if (opts.lastEventId !== undefined) headers["last-event-id"] = opts.lastEventId;
  const connectTimer = setTimeout(
    () => conn.abort.abort(new Error(`SSE connect timeout after ${opts.connectTimeoutMs ?? 10_000}ms`)),
    opts.connectTimeoutMs ?? 10_000,
  );
  let res: Response;
  try {
    const init: RequestInit = { method: opts.method ?? "GET", headers, signal: conn.abort.signal };
    if (opts.body !== undefined) init.body = opts.body;
    res = await fetch(url, init);
  } finally {
    clearTimeout(connectTimer);
  }
  conn.status = res.status;
  conn.headers = res.headers;

  if (res.status !== 200 || !res.body) {
    conn.errorBody = await res.text().catch(() => "");
    conn.ended = true;
    return conn;
  }

  const parser = createParser({
    onEvent: (msg) => {
      conn.events.push(toSseEvent(msg));
      conn.notify();
    },
    onRetry: (ms) => {
      conn.retryMs = ms;
    },
    onComment: () => {
      conn.comments++;
    },
  });
  const body = res.body;
  conn.closed = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of body) parser.feed(decoder.decode(chunk, { stream: true }));
      parser.feed(decoder.decode());
    } catch (err) {
      if (!conn.abort.signal.aborted) conn.error = err;
    } finally {
      conn.ended = true;
      conn.notify();
    }
  })();
  return conn;
}
