/**
 * A minimal SSE client for the bench: one `node:http` GET per stream (own socket), a tiny parser
 * for the gateway's frames (`retry:`, `id:` + `data:`, `:` comments) and an arrival stamp on the
 * shared monotonic clock for every event. `open()` resolves once the gateway sent `retry:`,
 * which it does only after the session subscription is live, so an event written afterwards is
 * never missed even without a cursor.
 */
import { type ClientRequest, request } from "node:http";
import { isRecord, nowNs } from "./util.ts";

/** One wire event with the monotonic ns at which its bytes arrived. */
export interface StampedEvent {
  atNs: bigint;
  id: string | undefined;
  type: string;
  runId: string | undefined;
  json: Record<string, unknown>;
}

type Listener = (event: StampedEvent) => void;

/** An open SSE stream. */
export interface SseStream {
  readonly events: StampedEvent[];
  /** Calls `fn` for every event from now on (returns the unsubscribe function). */
  listen(fn: Listener): () => void;
  /** The first event (already received or future) matching `pred`; rejects after `timeoutMs` or at end. */
  waitFor(pred: (e: StampedEvent) => boolean, timeoutMs: number, what: string): Promise<StampedEvent>;
  close(): void;
}

/** The first `message_update` carrying a `text_delta`. */
export function isTextDelta(e: StampedEvent): boolean {
  const inner = e.json.assistantMessageEvent;
  return e.type === "message_update" && isRecord(inner) && inner.type === "text_delta";
}

class Stream implements SseStream {
  readonly events: StampedEvent[] = [];
  private readonly listeners = new Set<Listener>();
  private readonly endListeners = new Set<(err: Error) => void>();
  private buffer = "";
  ended = false;
  req: ClientRequest | undefined;

  listen(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  waitFor(pred: (e: StampedEvent) => boolean, timeoutMs: number, what: string): Promise<StampedEvent> {
    const hit = this.events.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        off();
        this.endListeners.delete(onEnd);
      };
      const onEnd = (err: Error): void => {
        done();
        reject(new Error(`SSE stream ended while waiting for ${what}: ${err.message}`));
      };
      const off = this.listen((e) => {
        if (!pred(e)) return;
        done();
        resolve(e);
      });
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} on the SSE stream`));
      }, timeoutMs);
      if (this.ended) onEnd(new Error("already ended"));
      else this.endListeners.add(onEnd);
    });
  }

  close(): void {
    this.ended = true;
    this.req?.destroy();
  }

  end(err: Error): void {
    if (this.ended && this.endListeners.size === 0) return;
    this.ended = true;
    for (const fn of [...this.endListeners]) fn(err);
    this.endListeners.clear();
  }

  /** Feeds a chunk; returns true when it contained the `retry:` frame. */
  feed(text: string, atNs: bigint): boolean {
    this.buffer += text;
    let sawRetry = false;
    for (;;) {
      const cut = this.buffer.indexOf("\n\n");
      if (cut < 0) break;
      const frame = this.buffer.slice(0, cut);
      this.buffer = this.buffer.slice(cut + 2);
      let id: string | undefined;
      const data: string[] = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("retry:")) sawRetry = true;
        else if (line.startsWith("id:")) id = line.slice(3).trim();
        else if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
      }
      if (data.length === 0) continue;
      let json: unknown;
      try {
        json = JSON.parse(data.join("\n"));
      } catch {
        continue;
      }
      if (!isRecord(json)) continue;
      const event: StampedEvent = {
        atNs,
        id,
        type: typeof json.type === "string" ? json.type : "",
        runId: typeof json.runId === "string" ? json.runId : undefined,
        json,
      };
      this.events.push(event);
      for (const fn of [...this.listeners]) fn(event);
    }
    return sawRetry;
  }
}

/**
 * Opens the SSE stream at `url` (live only unless `after` is given) and resolves once the
 * gateway's subscription is live (`retry:` received).
 */
export function openStream(url: string, timeoutMs = 10_000, after?: string): Promise<SseStream> {
  const stream = new Stream();
  return new Promise((resolve, reject) => {
    let opened = false;
    const fail = (err: Error): void => {
      clearTimeout(timer);
      if (!opened) reject(err);
      stream.end(err);
    };
    const timer = setTimeout(() => {
      fail(new Error(`SSE ${url} not live within ${timeoutMs} ms`));
      stream.close();
    }, timeoutMs);
    const target = after === undefined ? url : `${url}?after=${encodeURIComponent(after)}`;
    const req = request(target, { agent: false, headers: { accept: "text/event-stream" } }, (res) => {
      if (res.statusCode !== 200) {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          fail(new Error(`GET ${url} → HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString("utf8")}`)),
        );
        return;
      }
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        const atNs = nowNs();
        if (stream.feed(chunk, atNs) && !opened) {
          opened = true;
          clearTimeout(timer);
          resolve(stream);
        }
      });
      res.on("end", () => fail(new Error("stream ended")));
      res.on("close", () => fail(new Error("stream closed")));
      res.on("error", (err) => fail(err));
    });
    req.on("error", (err) => fail(err));
    stream.req = req;
    req.end();
  });
}
