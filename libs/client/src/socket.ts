/**
 * `PiFleetSocket`: the multiplexed `/v1/ws` protocol over the global `WebSocket` (Node 22+,
 * browsers) — hello/welcome, resumable subscriptions, request/response, ping keepalive — with
 * automatic reconnect that says hello again and resubscribes every stream from its last offset.
 */
import { PiFleetApiError, PiFleetSocketError } from "./errors.ts";
import { backoffDelay, Cursor, isWireEvent } from "./resume.ts";
import type {
  ReconnectInfo,
  ReconnectOptions,
  StreamItem,
  StreamOptions,
  WsMethod,
  WsRequestParams,
  WsRequestResult,
} from "./types.ts";

/** The protocol version this client speaks. */
export const WS_PROTOCOL = 1;

/** The server's answer to `hello`. `connectionId` changes with every (re)connection. */
export interface WsWelcome {
  protocol: number;
  connectionId: string;
}

/**
 * Opens a WebSocket. The default passes `headers` (the `Authorization` of `apiKey`) where the
 * runtime can send them (Node, Bun) and opens a plain socket where it cannot (browsers: use a
 * same-origin proxy that authenticates, or pass your own factory).
 */
export type WebSocketFactory = (url: string, headers: Record<string, string>) => WebSocket;

/** Options of {@link PiFleetClient.ws}. */
export interface SocketOptions {
  /** Backoff between reconnects. */
  reconnect?: ReconnectOptions;
  /** Interval of keepalive pings (ms); default 20 000. */
  pingIntervalMs?: number;
  /**
   * The connection counts as dead, and is replaced, when nothing (a pong or any frame) arrived
   * for `pingIntervalMs + pongTimeoutMs` (ms); default 10 000.
   */
  pongTimeoutMs?: number;
  /** Called before each reconnect (`cursor` is always undefined: each subscription has its own). */
  onReconnect?: (info: ReconnectInfo) => void;
}

/** Options of one WebSocket request. */
export interface RequestOptions {
  /** Rejects the promise (with the signal's reason) when aborted; the server may still execute it. */
  signal?: AbortSignal;
}

/**
 * One subscription of a {@link PiFleetSocket}: iterate it to receive the stream's items in order,
 * without gap or duplicate across reconnects (the socket resubscribes from `offset`). A
 * `stream_reset` item (no offset) means the cursor could not be honoured: reload history; the
 * stream carries on. Iteration ends when the subscription or the socket is closed (or `signal`
 * aborts), and throws {@link PiFleetSocketError} when the gateway rejects the subscription
 * (unknown project or session, invalid cursor). One consumer per subscription.
 */
export interface PiFleetSubscription extends AsyncIterable<StreamItem> {
  readonly projectId: string;
  /** Absent for a project activity subscription. */
  readonly sessionId: string | undefined;
  /** The offset of the last item delivered (where a resubscription resumes). */
  readonly offset: string | undefined;
  /** Unsubscribes; iteration ends after the current item. Idempotent. */
  close(): void;
}

/**
 * A `/v1/ws` connection that survives disconnects. It connects at once, says hello, and after
 * any close (network error, gateway restart with 1001, 1013 for a slow client, keepalive timeout)
 * reconnects with jittered capped exponential backoff, says hello again, resubscribes every open
 * subscription from its last offset and re-sends requests that are safe to repeat.
 */
export interface PiFleetSocket {
  /** The current connection's id (after its welcome), else undefined. */
  readonly connectionId: string | undefined;
  /** Resolves with the welcome of the current connection, or of the next one when not connected. */
  ready(): Promise<WsWelcome>;
  /**
   * Subscribes to a session's stream, or to the project's activity stream when `sessionId` is
   * absent. Frames are sent once connected. @throws PiFleetSocketError
   * `PF_CLIENT_DUPLICATE_SUBSCRIPTION` when the same stream is already subscribed on this socket,
   * `PF_CLIENT_CLOSED` after `close()`.
   */
  subscribe(projectId: string, sessionId?: string, opts?: StreamOptions): PiFleetSubscription;
  /**
   * Runs a session operation through the gateway's REST route and resolves with its 200 answer.
   * Rejects with {@link PiFleetApiError} when the answer is `ok: false` (its HTTP `status` and
   * `code`), with {@link PiFleetSocketError} when the frame is rejected, the socket is closed, or
   * the connection drops while a request that is not safe to repeat awaits its answer. `state`,
   * `messages` and `prompt` are re-sent after a reconnect: `prompt` always carries an
   * `idempotencyKey` (a random one unless you pass yours), so a repeat returns the same run.
   */
  request<M extends WsMethod>(
    method: M,
    params: WsRequestParams<M>,
    opts?: RequestOptions,
  ): Promise<WsRequestResult<M>>;
  /** Closes for good: ends every subscription's iteration and rejects pending requests. */
  close(): void;
}

type Frame = { kind?: unknown; [key: string]: unknown };

interface PendingRequest {
  frame: { kind: "request"; id: number; method: WsMethod; params: Record<string, unknown> };
  sent: boolean;
  retrySafe: boolean;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

const OPEN = 1;

/** Opens `url`, with request headers where the runtime supports them. */
export const defaultWebSocketFactory: WebSocketFactory = (url, headers) => {
  if (Object.keys(headers).length > 0) {
    try {
      const WithHeaders = WebSocket as unknown as new (
        url: string,
        init: { headers: Record<string, string> },
      ) => WebSocket;
      return new WithHeaders(url, { headers });
    } catch {
      // A browser: it cannot send headers (it reads the init as a bad subprotocol).
    }
  }
  return new WebSocket(url);
};

function randomKey(): string {
  if (typeof crypto !== "undefined" && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}

class Subscription implements PiFleetSubscription {
  readonly projectId: string;
  readonly sessionId: string | undefined;
  readonly key: string;
  readonly cursor: Cursor;
  /** The id of the latest subscribe frame, to match an `error` answer. */
  frameId: string | undefined;
  failures = 0;
  private readonly owner: SocketImpl;
  private queue: StreamItem[] = [];
  private wake: (() => void) | undefined;
  private ended = false;
  private error: Error | undefined;
  private iterator: AsyncGenerator<StreamItem, void, undefined> | undefined;

  constructor(
    owner: SocketImpl,
    projectId: string,
    sessionId: string | undefined,
    after: string | undefined,
  ) {
    this.owner = owner;
    this.projectId = projectId;
    this.sessionId = sessionId;
    this.key = `${projectId}/${sessionId ?? ""}`;
    this.cursor = new Cursor(after);
  }

  get offset(): string | undefined {
    return this.cursor.offset;
  }

  [Symbol.asyncIterator](): AsyncIterator<StreamItem> {
    this.iterator ??= this.iterate();
    return this.iterator;
  }

  close(): void {
    if (this.ended) return;
    this.end();
    this.queue = [];
    this.owner.unsubscribe(this);
  }

  push(item: StreamItem): void {
    if (this.ended) return;
    this.queue.push(item);
    this.notify();
  }

  /** Ends iteration with `error` (after the items already queued). */
  fail(error: Error): void {
    this.error = error;
    this.end();
  }

  /** Ends iteration normally. */
  end(): void {
    this.ended = true;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private async *iterate(): AsyncGenerator<StreamItem, void, undefined> {
    try {
      for (;;) {
        const item = this.queue.shift();
        if (item) {
          yield item;
          continue;
        }
        if (this.error) throw this.error;
        if (this.ended) return;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
    } finally {
      this.close();
    }
  }
}

/** The {@link PiFleetSocket} implementation. */
class SocketImpl implements PiFleetSocket {
  private readonly url: string;
  private readonly headers: Record<string, string>;
  private readonly factory: WebSocketFactory;
  private readonly opts: SocketOptions;
  private ws: WebSocket | undefined;
  private welcome: WsWelcome | undefined;
  private closed = false;
  private attempt = 0;
  private lagging = false;
  private lastSeen = 0;
  private nextRequestId = 0;
  private nextFrameId = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private readonly waiters: { resolve: (w: WsWelcome) => void; reject: (e: unknown) => void }[] = [];
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly pending = new Map<number, PendingRequest>();

  constructor(url: string, headers: Record<string, string>, factory: WebSocketFactory, opts: SocketOptions) {
    this.url = url;
    this.headers = headers;
    this.factory = factory;
    this.opts = opts;
    this.connect();
  }

  get connectionId(): string | undefined {
    return this.welcome?.connectionId;
  }

  ready(): Promise<WsWelcome> {
    if (this.closed) return Promise.reject(new PiFleetSocketError("PF_CLIENT_CLOSED", "socket closed"));
    if (this.welcome) return Promise.resolve(this.welcome);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  subscribe(projectId: string, sessionId?: string, opts: StreamOptions = {}): PiFleetSubscription {
    if (this.closed) throw new PiFleetSocketError("PF_CLIENT_CLOSED", "socket closed");
    const sub = new Subscription(this, projectId, sessionId, opts.after);
    if (this.subscriptions.has(sub.key)) {
      throw new PiFleetSocketError("PF_CLIENT_DUPLICATE_SUBSCRIPTION", `already subscribed to ${sub.key}`);
    }
    this.subscriptions.set(sub.key, sub);
    if (this.welcome) this.sendSubscribe(sub);
    if (opts.signal) {
      if (opts.signal.aborted) sub.close();
      else opts.signal.addEventListener("abort", () => sub.close(), { once: true });
    }
    return sub;
  }

  /** Called by a subscription's `close()`. */
  unsubscribe(sub: Subscription): void {
    if (this.subscriptions.get(sub.key) !== sub) return;
    this.subscriptions.delete(sub.key);
    if (this.welcome) {
      this.send({
        kind: "unsubscribe",
        projectId: sub.projectId,
        ...(sub.sessionId === undefined ? {} : { sessionId: sub.sessionId }),
      });
    }
  }

  request<M extends WsMethod>(
    method: M,
    params: WsRequestParams<M>,
    opts: RequestOptions = {},
  ): Promise<WsRequestResult<M>> {
    if (this.closed) return Promise.reject(new PiFleetSocketError("PF_CLIENT_CLOSED", "socket closed"));
    const { signal } = opts;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = ++this.nextRequestId;
    const body: Record<string, unknown> = { ...params };
    if (method === "prompt" && body.idempotencyKey === undefined) body.idempotencyKey = randomKey();
    return new Promise<unknown>((resolve, reject) => {
      const onAbort = () => {
        this.pending.delete(id);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      const entry: PendingRequest = {
        frame: { kind: "request", id, method, params: body },
        sent: false,
        // A prompt's idempotency key covers queued prompts only: one that steers or follows up a
        // running session would be delivered twice.
        retrySafe:
          (method === "prompt" && body.streamingBehavior === undefined) ||
          method === "state" ||
          method === "messages",
        resolve: (value) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(value);
        },
        reject: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      this.pending.set(id, entry);
      if (this.welcome) entry.sent = this.send(entry.frame);
    }) as Promise<WsRequestResult<M>>;
  }

  close(): void {
    if (this.closed) return;
    this.stop(new PiFleetSocketError("PF_CLIENT_CLOSED", "socket closed"), false);
  }

  /** The gateway refused this socket for good (1008): everything fails, no reconnect. */
  private reject(error: PiFleetSocketError): void {
    if (this.closed) return;
    this.stop(error, true);
  }

  /** Stops for good: `error` settles requests and waiters; subscriptions end, or fail with it. */
  private stop(error: PiFleetSocketError, failSubscriptions: boolean): void {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.stopPing();
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
    for (const w of this.waiters.splice(0)) w.reject(error);
    for (const sub of this.subscriptions.values()) {
      if (failSubscriptions) sub.fail(error);
      else sub.end();
    }
    this.subscriptions.clear();
    const ws = this.ws;
    this.ws = undefined;
    this.welcome = undefined;
    try {
      ws?.close(1000, "client closed");
    } catch {
      // already closing
    }
  }

  private connect(): void {
    this.reconnectTimer = undefined;
    if (this.closed) return;
    this.lagging = false;
    let ws: WebSocket;
    try {
      ws = this.factory(this.url, this.headers);
    } catch (err) {
      this.reconnect("error", err);
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (ws !== this.ws) return;
      this.lastSeen = Date.now();
      this.send({ kind: "hello", protocol: WS_PROTOCOL });
      this.startPing();
    });
    ws.addEventListener("message", (m: MessageEvent) => {
      if (ws === this.ws) this.onMessage(m.data);
    });
    ws.addEventListener("close", (e: CloseEvent) => {
      if (ws !== this.ws) return;
      if (e.code === 1008) {
        this.reject(new PiFleetSocketError("PF_CLIENT_REJECTED", e.reason || "policy violation (1008)"));
        return;
      }
      this.disconnected("closed", e.code === 1000 ? undefined : e);
    });
    ws.addEventListener("error", () => {
      // a close event follows
    });
  }

  private onMessage(data: unknown): void {
    this.lastSeen = Date.now();
    if (typeof data !== "string") return;
    let frame: Frame;
    try {
      frame = JSON.parse(data) as Frame;
    } catch {
      return;
    }
    if (typeof frame !== "object" || frame === null) return;
    if (frame.kind === "welcome") this.onWelcome(frame);
    else if (frame.kind === "event") this.onEvent(frame);
    else if (frame.kind === "response") this.onResponse(frame);
    else if (frame.kind === "error") this.onError(frame);
    else if (frame.kind === "subscribed") this.onSubscribed(frame);
    // unsubscribed, pong: nothing to do (any frame counts for the keepalive)
  }

  private onWelcome(frame: Frame): void {
    this.welcome = {
      protocol: typeof frame.protocol === "number" ? frame.protocol : WS_PROTOCOL,
      connectionId: String(frame.connectionId ?? ""),
    };
    // The backoff restarts once this connection delivers (an event, a subscription, an answer),
    // not at its welcome: a connection the gateway closes right after it would loop fast.
    for (const sub of this.subscriptions.values()) this.sendSubscribe(sub);
    for (const p of this.pending.values()) if (!p.sent) p.sent = this.send(p.frame);
    const welcome = this.welcome;
    for (const w of this.waiters.splice(0)) w.resolve(welcome);
  }

  private onEvent(frame: Frame): void {
    const sessionId = typeof frame.sessionId === "string" ? frame.sessionId : "";
    const sub = this.subscriptions.get(`${String(frame.projectId)}/${sessionId}`);
    if (!sub || !isWireEvent(frame.event)) return;
    this.attempt = 0;
    if (frame.event.type === "stream_lagging") this.lagging = true;
    const item = sub.cursor.accept(typeof frame.offset === "string" ? frame.offset : undefined, frame.event);
    if (item) sub.push(item);
  }

  /** A live-only subscription learns where its stream started (see Cursor.seed). */
  private onSubscribed(frame: Frame): void {
    const sessionId = typeof frame.sessionId === "string" ? frame.sessionId : "";
    const sub = this.subscriptions.get(`${String(frame.projectId)}/${sessionId}`);
    if (sub) this.attempt = 0;
    if (sub && typeof frame.offset === "string") sub.cursor.seed(frame.offset);
  }

  private onResponse(frame: Frame): void {
    if (typeof frame.id !== "number") return;
    const p = this.pending.get(frame.id);
    if (!p) return;
    this.pending.delete(frame.id);
    this.attempt = 0;
    if (frame.ok === true) p.resolve(frame.result);
    else p.reject(new PiFleetApiError(typeof frame.status === "number" ? frame.status : 0, frame.error));
  }

  private onError(frame: Frame): void {
    const code = typeof frame.code === "string" ? frame.code : "PF_ERR_UNKNOWN";
    const message = typeof frame.error === "string" ? frame.error : "rejected";
    if (typeof frame.id === "number") {
      const p = this.pending.get(frame.id);
      if (!p) return;
      this.pending.delete(frame.id);
      p.reject(new PiFleetSocketError(code, message));
      return;
    }
    if (typeof frame.id !== "string") return;
    const sub = [...this.subscriptions.values()].find((s) => s.frameId === frame.id);
    if (!sub) return;
    if (code === "PF_ERR_SERVICE_UNAVAILABLE" || code === "PF_ERR_RATE_LIMITED") {
      // Redis trouble on the gateway's side, or the key at its stream cap (after a reconnect the
      // gateway may still count the old socket's slots until it notices it gone), as SSE retries a
      // 429: try again later on this connection.
      const ws = this.ws;
      setTimeout(
        () => {
          if (ws === this.ws && this.welcome && this.subscriptions.get(sub.key) === sub)
            this.sendSubscribe(sub);
        },
        backoffDelay(sub.failures++, this.opts.reconnect),
      );
      return;
    }
    this.subscriptions.delete(sub.key);
    sub.fail(new PiFleetSocketError(code, message));
  }

  private sendSubscribe(sub: Subscription): void {
    sub.frameId = `s${++this.nextFrameId}`;
    const after = sub.cursor.offset;
    this.send({
      kind: "subscribe",
      id: sub.frameId,
      projectId: sub.projectId,
      ...(sub.sessionId === undefined ? {} : { sessionId: sub.sessionId }),
      ...(after === undefined ? {} : { after }),
    });
  }

  /** Sends on the current socket; false when it is not open. */
  private send(frame: Record<string, unknown>): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  private startPing(): void {
    this.stopPing();
    const interval = this.opts.pingIntervalMs ?? 20_000;
    const timeout = this.opts.pongTimeoutMs ?? 10_000;
    let n = 0;
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastSeen > interval + timeout) {
        const ws = this.ws;
        this.disconnected("idle", new Error(`no frame for ${interval + timeout} ms`));
        try {
          ws?.close(4000, "keepalive timeout");
        } catch {
          // already closing
        }
        return;
      }
      this.send({ kind: "ping", id: `k${++n}` });
    }, interval);
  }

  private stopPing(): void {
    clearInterval(this.pingTimer);
    this.pingTimer = undefined;
  }

  /** The current connection is gone: settle in-flight requests and schedule the next one. */
  private disconnected(reason: ReconnectInfo["reason"], error: unknown): void {
    this.ws = undefined;
    this.welcome = undefined;
    this.stopPing();
    // 1009: one of the frames in flight was too large; re-sending it would only repeat the close.
    const tooLarge = (error as { code?: unknown } | undefined)?.code === 1009;
    for (const [id, p] of this.pending) {
      if (!p.sent) continue;
      if (tooLarge) {
        this.pending.delete(id);
        p.reject(
          new PiFleetSocketError(
            "PF_CLIENT_FRAME_TOO_LARGE",
            `the gateway closed the connection (1009, a frame too large) while "${p.frame.method}" awaited its answer`,
          ),
        );
      } else if (p.retrySafe) {
        p.sent = false;
      } else {
        this.pending.delete(id);
        p.reject(
          new PiFleetSocketError(
            "PF_CLIENT_DISCONNECTED",
            `connection lost while awaiting "${p.frame.method}": it may or may not have been executed`,
          ),
        );
      }
    }
    this.reconnect(this.lagging ? "lagging" : reason, error);
  }

  private reconnect(reason: ReconnectInfo["reason"], error: unknown): void {
    if (this.closed) return;
    const delayMs = reason === "lagging" ? 0 : backoffDelay(this.attempt, this.opts.reconnect);
    this.opts.onReconnect?.({ attempt: this.attempt, delayMs, cursor: undefined, reason, error });
    if (reason !== "lagging") this.attempt++;
    this.reconnectTimer = setTimeout(() => this.connect(), delayMs);
  }
}

/** Creates a {@link PiFleetSocket} on `url` (`ws://…/v1/ws`); it connects at once. */
export function openSocket(
  url: string,
  headers: Record<string, string>,
  factory: WebSocketFactory,
  opts: SocketOptions = {},
): PiFleetSocket {
  return new SocketImpl(url, headers, factory, opts);
}
