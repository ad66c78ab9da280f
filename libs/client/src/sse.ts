/**
 * Resumable Server-Sent Events over `fetch` + eventsource-parser: follows one stream across any
 * number of disconnects, reconnecting with `Last-Event-ID` = the last offset delivered.
 */
import { createParser } from "eventsource-parser";
import { PiFleetApiError } from "./errors.ts";
import { backoffDelay, Cursor, isWireEvent, retryAfterMs, sleep } from "./resume.ts";
import type { EventsOptions, ReconnectInfo, StreamItem } from "./types.ts";

/** How to reach the gateway. */
export interface SseTransport {
  fetch: typeof globalThis.fetch;
  /** Sent on every request (e.g. `authorization`). */
  headers: Record<string, string>;
}

/** Statuses worth retrying: the gateway is overloaded, restarting or briefly unready. */
const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);
const MAX_RETRY_AFTER_MS = 300_000;

async function readBody(res: Response): Promise<unknown> {
  const text = await res.text().catch(() => "");
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/**
 * Yields the events of the SSE stream at `url` in order, forever (until `opts.signal` aborts or
 * the consumer stops iterating), reconnecting after any disconnect from the last offset delivered
 * with no gap and no duplicate. Throws {@link PiFleetApiError} when the gateway refuses the stream
 * with a non-retryable status (400, 401, 403, 404, …).
 */
export async function* sseEvents(
  url: string,
  transport: SseTransport,
  opts: EventsOptions = {},
): AsyncGenerator<StreamItem, void, undefined> {
  const { signal } = opts;
  const cursor = new Cursor(opts.after);
  const idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
  let attempt = 0;
  while (!signal?.aborted) {
    const connection = new AbortController();
    const abort = () => connection.abort(signal?.reason);
    signal?.addEventListener("abort", abort, { once: true });
    let idleTimer: ReturnType<typeof setTimeout> | undefined;
    let idle = false;
    const armIdle = () => {
      if (idleTimeoutMs <= 0) return;
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => {
        idle = true;
        connection.abort(new Error(`no data for ${idleTimeoutMs} ms`));
      }, idleTimeoutMs);
    };
    let reason: ReconnectInfo["reason"] = "closed";
    let error: unknown;
    let minDelayMs = 0;
    try {
      const headers: Record<string, string> = { accept: "text/event-stream", ...transport.headers };
      if (cursor.offset !== undefined) headers["last-event-id"] = cursor.offset;
      armIdle();
      const res = await transport.fetch(url, { headers, signal: connection.signal });
      if (!res.ok || !res.body) {
        const failure = new PiFleetApiError(res.status, await readBody(res));
        if (!RETRYABLE.has(res.status)) throw failure;
        reason = "status";
        error = failure;
        minDelayMs = Math.min(MAX_RETRY_AFTER_MS, retryAfterMs(res.headers.get("retry-after")));
      } else {
        const pending: StreamItem[] = [];
        let lagging = false;
        /** `stream_ended`: the session or project was deleted, nothing to resume. */
        let ended = false;
        // An `id:` without data (the gateway's first frame for a live-only stream) seeds the cursor.
        let idOnly: string | undefined;
        const parser = createParser({
          onId: (id) => {
            idOnly = id;
          },
          onEvent: (message) => {
            // Only an event with its own id replaces it: the id-less frames that may follow the
            // first one (re-sent pending dialogs) must not drop the start offset.
            if (message.id !== undefined) idOnly = undefined;
            let event: unknown;
            try {
              event = JSON.parse(message.data);
            } catch {
              return; // not a wire event
            }
            if (!isWireEvent(event)) return;
            if (event.type === "stream_lagging") lagging = true;
            if (event.type === "stream_ended") ended = true;
            const item = cursor.accept(message.id || undefined, event);
            if (item) pending.push(item);
          },
        });
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        try {
          for (;;) {
            armIdle();
            const { value, done } = await reader.read();
            if (done) break;
            parser.feed(decoder.decode(value, { stream: true }));
            if (idOnly !== undefined) {
              cursor.seed(idOnly);
              idOnly = undefined;
            }
            if (pending.length > 0) attempt = 0;
            clearTimeout(idleTimer); // a slow consumer is not an idle server
            while (pending.length > 0) yield pending.shift()!;
            if (ended) return;
            if (lagging) {
              reason = "lagging";
              break;
            }
          }
        } finally {
          reader.cancel().catch(() => {});
        }
      }
    } catch (err) {
      if (signal?.aborted) return;
      if (err instanceof PiFleetApiError) throw err;
      reason = idle ? "idle" : "error";
      error = err;
    } finally {
      clearTimeout(idleTimer);
      signal?.removeEventListener("abort", abort);
      connection.abort();
    }
    if (signal?.aborted) return;
    const delayMs = reason === "lagging" ? 0 : Math.max(minDelayMs, backoffDelay(attempt, opts.reconnect));
    opts.onReconnect?.({ attempt, delayMs, cursor: cursor.offset, reason, error });
    if (reason !== "lagging") attempt++;
    await sleep(delayMs, signal);
  }
}
