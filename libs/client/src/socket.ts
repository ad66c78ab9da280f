/**
 * `PiFleetSocket`: the multiplexed `/v1/ws` protocol over the global `WebSocket` (Node 22+,
 * browsers) — hello/welcome, resumable subscriptions, request/response, ping keepalive — with
 * automatic reconnect that says hello again and resubscribes every stream from its last offset.
 * Subscriptions and their bounded queues: socket-subscription.ts; refused handshakes: handshake.ts.
 */
import { PiFleetApiError, PiFleetSocketError } from "./errors.ts";
import { isFinalRefusal, probeRefusal, type Refusal, watchRefusal } from "./handshake.ts";
import { backoffDelay, isWireEvent } from "./resume.ts";
import {
  checkMaxQueued,
  type PiFleetSubscription,
  Subscription,
  type SubscriptionOwner,
} from "./socket-subscription.ts";
import type {
  ReconnectInfo,
  ReconnectOptions,
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
  /**
   * Items with an offset one subscription queues for a consumer that is not keeping up: an integer
   * ≥ 16 (`Infinity`: no bound), default 1000. At that many the socket unsubscribes the stream on
   * the gateway (what arrives meanwhile is dropped) and, once the consumer is down to half of it,
   * subscribes again after the last item queued: memory stays bounded and nothing is repeated, nor
   * lost while the stream still retains that offset — if it was trimmed meanwhile, the consumer
   * gets a `stream_reset` item, as after a reconnect. Items without an offset (`stream_reset`,
   * pending extension-UI dialogs the gateway re-sends after each subscribe) do not count; a dialog
   * already yielded is not yielded again (by its `id`).
   */
  maxQueuedEvents?: number;
}

export type { PiFleetSubscription } from "./socket-subscription.ts";

/** Options of one WebSocket request. */
export interface RequestOptions {
  /** Rejects the promise (with the signal's reason) when aborted; the server may still execute it. */
  signal?: AbortSignal;
}

/**
 * A `/v1/ws` connection that survives disconnects. It connects at once, says hello, and after
 * any close (network error, gateway restart with 1001, 1013 for a slow client, keepalive timeout)
 * reconnects with jittered capped exponential backoff, says hello again, resubscribes every open
 * subscription from its last offset and re-sends requests that are safe to repeat (after a
 * handshake refused with 429: not before its `Retry-After`). It stops for good, failing everything
 * with `PF_CLIENT_REJECTED`, on close 1008 and on a handshake the gateway itself refused with 401
 * or 403 and its `PF_ERR_…` body (see handshake.ts for how the status is learnt; a proxy's
 * 401/403 is retried).
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
/** The longest `Retry-After` of a refused handshake honoured (ms), as for SSE. */
const MAX_RETRY_AFTER_MS = 300_000;
/** Subscribes refused as "already subscribed" retried before the refusal is final. */
const MAX_ALREADY_SUBSCRIBED_RETRIES = 5;

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

/** The {@link PiFleetSocket} implementation. */
class SocketImpl implements PiFleetSocket, SubscriptionOwner {
  private readonly url: string;
  private readonly headers: Record<string, string>;
  private readonly factory: WebSocketFactory;
  private readonly opts: SocketOptions;
  private readonly probe: typeof globalThis.fetch | undefined;
  private readonly maxQueued: number;
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

  constructor(
    url: string,
    headers: Record<string, string>,
    factory: WebSocketFactory,
    opts: SocketOptions,
    probe: typeof globalThis.fetch | undefined,
  ) {
    this.url = url;
    this.headers = headers;
    this.factory = factory;
    this.opts = opts;
    this.probe = probe;
    this.maxQueued = checkMaxQueued(opts.maxQueuedEvents);
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
    const sub = new Subscription(this, projectId, sessionId, opts.after, this.maxQueued);
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
    this.sendUnsubscribe(sub);
  }

  /** Called by a paused subscription whose consumer caught up: subscribe again from its offset. */
  resume(sub: Subscription): void {
    if (!sub.paused || this.subscriptions.get(sub.key) !== sub) return;
    sub.paused = false;
    if (this.welcome) this.sendSubscribe(sub);
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
    let opened = false;
    let refusal: Refusal | undefined;
    const watched = watchRefusal(ws, (r) => {
      refusal = r;
    });
    ws.addEventListener("open", () => {
      if (ws !== this.ws) return;
      opened = true;
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
      if (!opened && (refusal !== undefined || (!watched && this.probe !== undefined))) {
        void this.handshakeFailed(ws, e, refusal);
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
    // A paused subscription subscribes again once its consumer caught up (resume()).
    for (const sub of this.subscriptions.values()) if (!sub.paused) this.sendSubscribe(sub);
    for (const p of this.pending.values()) if (!p.sent) p.sent = this.send(p.frame);
    const welcome = this.welcome;
    for (const w of this.waiters.splice(0)) w.resolve(welcome);
  }

  private onEvent(frame: Frame): void {
    if (!isWireEvent(frame.event)) return;
    // The gateway cuts the whole connection: reconnect at once, whichever stream it names.
    if (frame.event.type === "stream_lagging") this.lagging = true;
    const sessionId = typeof frame.sessionId === "string" ? frame.sessionId : "";
    const sub = this.subscriptions.get(`${String(frame.projectId)}/${sessionId}`);
    // Frames name the stream, not the subscription: before this subscription's own `subscribed`
    // ack they are an earlier one's (closed or paused, its frames still in flight); the gateway
    // sends a subscription's events only after its ack.
    if (!sub?.acked || sub.paused) return;
    this.attempt = 0;
    const item = sub.cursor.accept(typeof frame.offset === "string" ? frame.offset : undefined, frame.event);
    if (!item) return;
    sub.push(item);
    // The stream's session or project was deleted: the gateway dropped the subscription, so
    // this socket forgets it (no resubscribe after a reconnect; the stream may be subscribed anew).
    if (item.event.type === "stream_ended") {
      this.subscriptions.delete(sub.key);
      sub.end();
    } else if (sub.full) this.pause(sub);
  }

  /**
   * The ack of a subscribe: the stream's events that follow are this subscription's. A live-only
   * subscription also learns where its stream started (see Cursor.seed).
   */
  private onSubscribed(frame: Frame): void {
    const sessionId = typeof frame.sessionId === "string" ? frame.sessionId : "";
    const sub = this.subscriptions.get(`${String(frame.projectId)}/${sessionId}`);
    // A late ack of an earlier subscription of the stream is not this one's.
    if (!sub || sub.frameId === undefined || frame.id !== sub.frameId || !sub.live) return;
    this.attempt = 0;
    sub.acked = true;
    sub.failures = 0;
    if (typeof frame.offset === "string") sub.cursor.seed(frame.offset);
  }

  /**
   * `sub`'s consumer is `maxQueuedEvents` behind: unsubscribe on the gateway (what is in flight
   * is dropped, the cursor stays at the last item queued) until the consumer catches up.
   */
  private pause(sub: Subscription): void {
    sub.paused = true;
    this.sendUnsubscribe(sub);
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
    sub.live = false;
    sub.acked = false;
    if (
      code === "PF_ERR_SERVICE_UNAVAILABLE" ||
      code === "PF_ERR_RATE_LIMITED" ||
      (code === "PF_ERR_REQUEST_INVALID" &&
        /already subscribed/i.test(message) &&
        sub.failures < MAX_ALREADY_SUBSCRIBED_RETRIES)
    ) {
      // Redis trouble on the gateway's side, or the key at its stream cap (after a reconnect the
      // gateway may still count the old socket's slots until it notices it gone), as SSE retries a
      // 429; or the gateway still setting up a subscription of this stream closed just before
      // (it answers `unsubscribed` at once, and refuses a new subscribe until that lookup ends,
      // which takes milliseconds: a few tries): try again later on this connection.
      // A rate-limited subscribe names its wait (`retryAfterMs`, as REST's Retry-After): not before.
      const ws = this.ws;
      const wait =
        typeof frame.retryAfterMs === "number" && frame.retryAfterMs > 0
          ? Math.min(frame.retryAfterMs, MAX_RETRY_AFTER_MS)
          : 0;
      setTimeout(
        () => {
          if (ws === this.ws && this.welcome && this.subscriptions.get(sub.key) === sub && !sub.paused)
            this.sendSubscribe(sub);
        },
        Math.max(wait, backoffDelay(sub.failures++, this.opts.reconnect)),
      );
      return;
    }
    this.subscriptions.delete(sub.key);
    sub.fail(new PiFleetSocketError(code, message));
  }

  /** Subscribes `sub` on the current connection from its cursor; events count after the ack. */
  private sendSubscribe(sub: Subscription): void {
    sub.frameId = `s${++this.nextFrameId}`;
    sub.acked = false;
    const after = sub.cursor.offset;
    sub.live = this.send({
      kind: "subscribe",
      id: sub.frameId,
      projectId: sub.projectId,
      ...(sub.sessionId === undefined ? {} : { sessionId: sub.sessionId }),
      ...(after === undefined ? {} : { after }),
    });
  }

  /** Unsubscribes `sub` on the current connection, if it is subscribed there. */
  private sendUnsubscribe(sub: Subscription): void {
    const live = sub.live;
    sub.live = false;
    sub.acked = false;
    if (!live || !this.welcome) return;
    this.send({
      kind: "unsubscribe",
      projectId: sub.projectId,
      ...(sub.sessionId === undefined ? {} : { sessionId: sub.sessionId }),
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

  /**
   * The handshake of `ws` failed (closed before it opened): a refusal the `ws` package reported,
   * else what a probe of the gateway answers, decides. The gateway's own 401/403 (its
   * `PF_ERR_…` body: {@link isFinalRefusal}) stops the socket for good (`PF_CLIENT_REJECTED`); a
   * 401/403 without it (a proxy's) backs off, a probed one as after any close, a reported one as
   * below. A 429 (or 503) waits for its `Retry-After`, whatever its body; anything else backs off
   * as usual.
   */
  private async handshakeFailed(
    ws: WebSocket,
    close: CloseEvent,
    reported: Refusal | undefined,
  ): Promise<void> {
    const refusal =
      reported ?? (this.probe ? await probeRefusal(this.url, this.headers, this.probe) : undefined);
    if (ws !== this.ws || this.closed) return;
    const status = refusal?.status ?? 0;
    if (refusal && isFinalRefusal(refusal)) {
      const failure = new PiFleetApiError(status, refusal.body);
      this.reject(
        new PiFleetSocketError(
          "PF_CLIENT_REJECTED",
          `the gateway refused the WebSocket handshake (${failure.message})`,
          status,
        ),
      );
      return;
    }
    if (refusal && (status === 429 || status === 503 || reported !== undefined)) {
      this.disconnected(
        "status",
        new PiFleetApiError(status, refusal.body),
        Math.min(MAX_RETRY_AFTER_MS, refusal.retryAfterMs),
      );
      return;
    }
    this.disconnected("closed", close);
  }

  /** The current connection is gone: settle in-flight requests and schedule the next one. */
  private disconnected(reason: ReconnectInfo["reason"], error: unknown, minDelayMs = 0): void {
    this.ws = undefined;
    this.welcome = undefined;
    this.stopPing();
    for (const sub of this.subscriptions.values()) {
      sub.live = false;
      sub.acked = false;
    }
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
    this.reconnect(this.lagging ? "lagging" : reason, error, minDelayMs);
  }

  private reconnect(reason: ReconnectInfo["reason"], error: unknown, minDelayMs = 0): void {
    if (this.closed) return;
    const delayMs =
      reason === "lagging" ? 0 : Math.max(minDelayMs, backoffDelay(this.attempt, this.opts.reconnect));
    this.opts.onReconnect?.({ attempt: this.attempt, delayMs, cursor: undefined, reason, error });
    if (reason !== "lagging") this.attempt++;
    this.reconnectTimer = setTimeout(() => this.connect(), delayMs);
  }
}

/**
 * Creates a {@link PiFleetSocket} on `url` (`ws://…/v1/ws`); it connects at once. `probe`: the
 * fetch that asks the gateway why a handshake failed (see handshake.ts), for sockets whose
 * failures carry no status; pass it only when `factory` opens exactly `url` with `headers`.
 * @throws PiFleetError when `opts.maxQueuedEvents` is not an integer ≥ 16 (nor `Infinity`)
 */
export function openSocket(
  url: string,
  headers: Record<string, string>,
  factory: WebSocketFactory,
  opts: SocketOptions = {},
  probe?: typeof globalThis.fetch,
): PiFleetSocket {
  return new SocketImpl(url, headers, factory, opts, probe);
}
