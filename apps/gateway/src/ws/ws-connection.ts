/**
 * One `/v1/ws` connection (API.md "WebSocket"): `hello` → `welcome`; `subscribe` / `unsubscribe`
 * session streams (or a project's activity when `sessionId` is absent) with the same replay,
 * reset and lag rules as SSE; `request` → `response` for session operations, executed through
 * the REST routes themselves (`inject`), so validation, limits and semantics are identical;
 * `ping` → `pong`. A client whose unsent bytes exceed the bound gets a final `stream_lagging`
 * event per subscription and a close (1013); on shutdown every socket closes with 1001. Each
 * subscription holds one of the credential's stream slots (PI_FLEET_MAX_STREAMS_PER_KEY); a
 * subscription whose session or project is deleted gets a final `stream_ended` event and is dropped
 * (its slot freed; no `unsubscribed` frame). Pings, close deadlines and frame flow are
 * socket-lifecycle.ts's.
 */
import { randomUUID } from "node:crypto";
import type { Socket } from "node:net";
import { type ApiError, isOffset, WS_PROTOCOL, WsClientFrame } from "@pi-fleet/contracts";
import { type StreamEntry, type StreamRef, StreamSubscription } from "@pi-fleet/streams";
import type { FastifyInstance } from "fastify";
import Compile from "typebox/compile";
import type { WebSocket } from "ws";
import type { RequestAuth } from "../auth/request-auth.ts";
import { takenBy, waitForDrain } from "../drain-wait.ts";
import { isRedisUnavailable } from "../error-handler.ts";
import { injectRoute, type RouteCall, type SocketClient } from "../inject-route.ts";
import { TOO_DEEP_MESSAGE, tooDeep } from "../json-depth.ts";
import { pendingUi } from "../routes/events.ts";
import type { GatewayServices } from "../services.ts";
import { closeSocket, FrameFlow, keepAlive } from "./socket-lifecycle.ts";
import { requestRoute } from "./ws-requests.ts";

const validate = Compile(WsClientFrame);

/** A replay that makes no progress for this long (ms) is cut with `stream_lagging` (as SSE's). */
const REPLAY_STALL_MS = 10_000;

/** One subscribe not set up yet; an unsubscribe of its stream cancels it. */
interface SubscribeAttempt {
  cancelled: boolean;
}

/** Limits of one connection. */
export interface WsLimits {
  maxBufferedBytes: number;
  maxSubscriptions: number;
  /** WebSocket ping interval (ms); a socket silent for two is cut (socket-lifecycle.ts). */
  pingIntervalMs: number;
  /**
   * Spends one request of the org's rate limit (limits/rate-limit.ts) for a `subscribe`, as a
   * REST request would; resolves the error to answer when the budget is spent.
   */
  spendRequest: () => Promise<ApiError | undefined>;
  /**
   * How long a subscription's stream may take to go live (ms: PI_FLEET_REQUEST_TIMEOUT_MS);
   * beyond it the subscribe fails with PF_ERR_SERVICE_UNAVAILABLE (Redis' pub/sub unreachable).
   */
  streamOpenTimeoutMs: number;
}

type Frame = { kind: string; id?: unknown; [key: string]: unknown };

/** `promise`, or a rejection once `ms` passed (the timer never outlives it). */
async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not done within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Serves one WebSocket. */
export class WsConnection {
  readonly id = randomUUID();
  private readonly socket: WebSocket;
  private readonly raw: Socket;
  private readonly app: FastifyInstance;
  private readonly s: GatewayServices;
  private readonly limits: WsLimits;
  private readonly client: SocketClient;
  private readonly flow: FrameFlow;
  /** Who authenticated the upgrade request; subscriptions are scoped to its org. */
  readonly auth: RequestAuth;
  private readonly subscriptions = new Map<string, StreamSubscription>();
  /** Streams whose subscribe is looking up its project or session (see lookUp()), and its end. */
  private readonly subscribing = new Map<string, { attempt: SubscribeAttempt; done: Promise<void> }>();
  /** Subscribes of each stream not yet set up: an unsubscribe cancels all of them. */
  private readonly attempts = new Map<string, Set<SubscribeAttempt>>();
  /** Each subscription's slot among the credential's open streams (PI_FLEET_MAX_STREAMS_PER_KEY). */
  private readonly slots = new Map<string, () => void>();
  /** The wait of the replays while the socket is congested (see congested()). */
  private drained: Promise<void> | undefined;
  private greeted = false;
  private closed = false;

  /**
   * @param raw the connection's TCP socket (the upgrade request's `request.raw.socket`): its
   *   `drain` ends a replay's wait for the client
   */
  constructor(
    socket: WebSocket,
    raw: Socket,
    app: FastifyInstance,
    auth: RequestAuth,
    client: SocketClient,
    limits: WsLimits,
  ) {
    this.socket = socket;
    this.raw = raw;
    this.auth = auth;
    this.app = app;
    this.s = app.services;
    this.client = client;
    this.limits = limits;
    this.flow = new FrameFlow(socket);
    keepAlive(socket, limits.pingIntervalMs);
    socket.on("message", (data, isBinary) => this.onMessage(isBinary ? null : data.toString()));
    socket.on("close", () => void this.dispose());
    socket.on("error", () => void this.dispose());
  }

  /** Closes the socket (1001 on shutdown). */
  close(code: number, reason: string): void {
    // Also when already closing (cut as lagging): a shutdown then shortens its close deadline.
    closeSocket(this.socket, code, reason);
    void this.dispose();
  }

  /**
   * One frame: parsed, checked and dispatched synchronously, so neither its text nor its parsed
   * object outlives this call — a request keeps only its serialised body while its route runs (a
   * prompt frame may carry ~54 MiB of images). Never throws (a throw here would reach ws).
   */
  private onMessage(text: string | null): void {
    let id: unknown;
    try {
      const frame = this.parse(text);
      if (frame === undefined) return;
      id = frame.id;
      const work = this.dispatch(frame);
      if (work) this.flow.track(work).catch((err: unknown) => this.failedFrame(id, err));
    } catch (err) {
      this.failedFrame(id, err);
    }
  }

  /** The frame, validated; undefined when it was answered with an error frame (or the socket closed). */
  private parse(text: string | null): Frame | undefined {
    if (this.closed) return undefined;
    let frame: unknown;
    try {
      if (text === null) throw new Error("binary frames are not accepted");
      frame = JSON.parse(text);
    } catch {
      this.send({ kind: "error", code: "PF_ERR_REQUEST_MALFORMED_JSON", error: "frames are JSON text" });
      return undefined;
    }
    if (tooDeep(frame)) {
      this.send({
        kind: "error",
        code: "PF_ERR_REQUEST_INVALID",
        error: `invalid frame: ${TOO_DEEP_MESSAGE}`,
      });
      return undefined;
    }
    if (!validate.Check(frame)) {
      const first = validate.Errors(frame)[0];
      const id = (frame as { id?: unknown } | null)?.id;
      this.send({
        kind: "error",
        ...(typeof id === "string" || typeof id === "number" ? { id } : {}),
        code: "PF_ERR_REQUEST_INVALID",
        error: `invalid frame${first ? `: ${first.instancePath || "/"} ${first.message}` : ""}`,
      });
      return undefined;
    }
    const f = frame as Frame;
    if (!this.greeted && f.kind !== "hello") {
      this.send({ kind: "error", code: "PF_ERR_REQUEST_INVALID", error: "send hello first" });
      return undefined;
    }
    return f;
  }

  /** Answers a valid frame; returns the work still under way (tracked by FrameFlow), if any. */
  private dispatch(f: Frame): Promise<void> | undefined {
    switch (f.kind) {
      case "hello":
        this.greeted = true;
        this.send({ kind: "welcome", protocol: WS_PROTOCOL, connectionId: this.id });
        return undefined;
      case "ping":
        this.send({ kind: "pong", ...(f.id === undefined ? {} : { id: f.id }) });
        return undefined;
      case "subscribe":
        return this.subscribe(
          f as Frame & { projectId: string; sessionId?: string; after?: string; id?: string },
        );
      case "unsubscribe":
        return this.unsubscribe(f as Frame & { projectId: string; sessionId?: string; id?: string });
      case "request": {
        const r = f as Frame & { id: string | number; method: string; params: Record<string, unknown> };
        // The route call is built (its body serialised) now; the frame is not kept meanwhile.
        return this.request(r.id, requestRoute(r.method, r.params));
      }
      default:
        return undefined;
    }
  }

  private async subscribe(f: {
    projectId: string;
    sessionId?: string;
    after?: string;
    id?: string;
  }): Promise<void> {
    const key = `${f.projectId}/${f.sessionId ?? ""}`;
    const fail = (code: string, error: string, extra?: { retryAfterMs?: number }) =>
      this.send({ kind: "error", id: f.id, code, error, ...extra });
    if (f.after !== undefined && !isOffset(f.after))
      return fail("PF_ERR_STREAM_CURSOR_INVALID", "invalid stream offset");
    const attempt: SubscribeAttempt = { cancelled: false };
    const attempts = this.attempts.get(key) ?? new Set<SubscribeAttempt>();
    this.attempts.set(key, attempts);
    attempts.add(attempt);
    let found: boolean;
    try {
      found = await this.lookUp(f, key, attempt, fail);
    } finally {
      attempts.delete(attempt);
      if (attempts.size === 0) this.attempts.delete(key);
    }
    if (!found) return;
    // Each subscription is an open stream of the credential, as an SSE stream is.
    try {
      this.slots.set(
        key,
        this.s.connections.acquire(this.auth, () => this.close(1008, "credential revoked")),
      );
    } catch (err) {
      return fail("PF_ERR_RATE_LIMITED", (err as Error).message);
    }
    const ref: StreamRef = f.sessionId
      ? { org: this.auth.org, project: f.projectId, session: f.sessionId }
      : { org: this.auth.org, project: f.projectId, activity: true };
    const prefix = `{"kind":"event","projectId":${JSON.stringify(f.projectId)}${
      f.sessionId ? `,"sessionId":${JSON.stringify(f.sessionId)}` : ""
    }`;
    // Frames produced while subscribing (a reset found by open()) wait for the `subscribed` ack.
    let held: string[] | undefined = [];
    const emit = (frame: string) => (held ? held.push(frame) : this.sendRaw(frame));
    /** The stream ended (its session or project was deleted) before the `subscribed` ack. */
    let endedEarly = false;
    const drop = () => {
      if (this.subscriptions.get(key) === subscription) {
        this.subscriptions.delete(key);
        this.releaseSlot(key);
      }
    };
    const subscription = new StreamSubscription(this.s.events, this.s.hub, ref, f.after, {
      entry: (e: StreamEntry) => {
        this.s.metrics.frames.ws++;
        emit(`${prefix},"offset":${JSON.stringify(e.id)},"event":${e.data}}`);
      },
      reset: (reason, firstOffset) => {
        this.s.metrics.frames.ws++;
        emit(`${prefix},"event":${JSON.stringify({ type: "stream_reset", reason, firstOffset })}}`);
      },
      failed: () => this.close(1011, "stream unavailable"),
      // Its final `stream_ended` event (no offset); the subscription is gone, as if unsubscribed.
      ended: (data) => {
        this.s.metrics.frames.ws++;
        emit(`${prefix},"event":${data}}`);
        if (held) endedEarly = true;
        else drop();
      },
      congested: () => this.congested(),
    });
    this.subscriptions.set(key, subscription);
    try {
      // Watching the stream before the ack, as SSE sends its head only after it: a client that
      // acts on `subscribed` (prompts) misses nothing written after it.
      await withTimeout(subscription.open(), this.limits.streamOpenTimeoutMs);
      if (this.subscriptions.get(key) !== subscription) {
        // Unsubscribed while the stream was being watched: no ack will come, so say so.
        fail("PF_ERR_REQUEST_INVALID", "unsubscribed before the subscription was set up");
        return;
      }
      this.send({
        kind: "subscribed",
        id: f.id,
        projectId: f.projectId,
        ...(f.sessionId ? { sessionId: f.sessionId } : {}),
        // Live only: where it starts, so a resubscribe before the first event misses nothing.
        ...(f.after === undefined ? { offset: subscription.offset } : {}),
      });
      for (const frame of held) this.sendRaw(frame);
      held = undefined;
      if (endedEarly) {
        drop();
        return;
      }
      await subscription.catchUp();
    } catch {
      if (this.subscriptions.get(key) === subscription) {
        this.subscriptions.delete(key);
        this.releaseSlot(key);
      }
      await subscription.close();
      fail("PF_ERR_SERVICE_UNAVAILABLE", "stream unavailable");
      return;
    }
    if ("session" in ref) {
      // Dialogs still waiting for an answer, re-sent after the replay as events without an offset.
      for (const pending of await pendingUi(this.s, ref, this.app.log)) {
        if (this.subscriptions.get(key) !== subscription) return;
        this.sendRaw(`${prefix},"event":${JSON.stringify(pending)}}`);
      }
    }
  }

  /**
   * The part of a subscribe before its subscription exists: waits for a cancelled subscribe of the
   * same stream to end, checks the caps, spends a request of the org's budget and looks the
   * project or session up. Answers the refusals itself.
   * @returns whether the stream exists and the subscribe goes on
   */
  private async lookUp(
    f: { projectId: string; sessionId?: string },
    key: string,
    attempt: SubscribeAttempt,
    fail: (code: string, error: string, extra?: { retryAfterMs?: number }) => void,
  ): Promise<boolean> {
    const unsubscribed = () => {
      fail("PF_ERR_REQUEST_INVALID", "unsubscribed before the subscription was set up");
      return false;
    };
    // A subscribe of this stream that an unsubscribe cancelled while it looked the stream up ends
    // in a moment (with an error): this one waits for it instead of being refused.
    const ending = this.subscribing.get(key);
    if (ending?.attempt.cancelled) await ending.done;
    if (this.closed) return false;
    if (attempt.cancelled) return unsubscribed();
    if (this.subscriptions.has(key) || this.subscribing.has(key)) {
      fail("PF_ERR_REQUEST_INVALID", "already subscribed");
      return false;
    }
    if (this.subscriptions.size + this.subscribing.size >= this.limits.maxSubscriptions) {
      fail(
        "PF_ERR_REQUEST_TOO_LARGE",
        `at most ${this.limits.maxSubscriptions} subscriptions per connection`,
      );
      return false;
    }
    // Reserved while the lookup is in flight: frames are handled concurrently, so a second
    // subscribe to the same stream (or past the cap) must see this one.
    let lookedUp: () => void = () => {};
    const done = new Promise<void>((resolve) => {
      lookedUp = resolve;
    });
    this.subscribing.set(key, { attempt, done });
    let exists: unknown;
    let refused: ApiError | undefined;
    try {
      // One request of the org's budget, as REST counts one, before the Redis work it pays for
      // (lookup, watch, bounds, replay: about a dozen commands with the unsubscribe).
      refused = await this.limits.spendRequest();
      if (!refused) {
        exists = f.sessionId
          ? await this.s.registry.getSession(this.auth.org, f.projectId, f.sessionId)
          : await this.s.registry.getProject(this.auth.org, f.projectId);
      }
    } finally {
      this.subscribing.delete(key);
      lookedUp();
    }
    // The socket closed during the lookup: dispose() has run, nothing may be added now.
    if (this.closed) return false;
    if (refused) {
      // The wait, as REST's Retry-After gives it.
      const { retryAfterMs } = (refused.details ?? {}) as { retryAfterMs?: number };
      fail(refused.code, refused.message, retryAfterMs === undefined ? undefined : { retryAfterMs });
      return false;
    }
    if (attempt.cancelled) return unsubscribed();
    if (!exists) {
      fail(
        f.sessionId ? "PF_ERR_SESSION_NOT_FOUND" : "PF_ERR_PROJECT_NOT_FOUND",
        "unknown project or session",
      );
      return false;
    }
    return true;
  }

  private async unsubscribe(f: { projectId: string; sessionId?: string; id?: string }): Promise<void> {
    const key = `${f.projectId}/${f.sessionId ?? ""}`;
    // Subscribes not set up yet (looking up their stream, or waiting for a cancelled one): they stop
    // there and answer an error.
    for (const attempt of this.attempts.get(key) ?? []) attempt.cancelled = true;
    const subscription = this.subscriptions.get(key);
    this.subscriptions.delete(key);
    this.releaseSlot(key);
    await subscription?.close();
    this.send({
      kind: "unsubscribed",
      id: f.id,
      projectId: f.projectId,
      ...(f.sessionId ? { sessionId: f.sessionId } : {}),
    });
  }

  private async request(id: string | number, call: RouteCall): Promise<void> {
    const { status, body } = await injectRoute(this.app, this.client, call);
    if (status < 400) this.send({ kind: "response", id, ok: true, result: body });
    else this.send({ kind: "response", id, ok: false, status, error: body });
  }

  /**
   * A frame whose handling failed (Redis unreachable, a bug): an error frame answers it (with its
   * id when it had one), the socket stays open, the failure is logged. Never throws.
   */
  private failedFrame(id: unknown, err: unknown): void {
    const unavailable = err instanceof Error && isRedisUnavailable(err);
    if (unavailable) this.app.log.warn({ err: (err as Error).message }, "ws frame failed: redis unavailable");
    else this.app.log.error({ err }, "ws frame failed");
    try {
      this.send({
        kind: "error",
        ...(typeof id === "string" || typeof id === "number" ? { id } : {}),
        code: unavailable ? "PF_ERR_SERVICE_UNAVAILABLE" : "PF_ERR_INTERNAL",
        error: unavailable ? "service temporarily unavailable" : "internal error",
      });
    } catch {
      this.close(1011, "internal error");
    }
  }

  /**
   * Replay backpressure: waits while the socket holds more than a quarter of the client limit
   * (at most 256 KiB). Every replaying subscription of the connection waits on the same wait,
   * which ends when the socket is down to the mark (drain-wait.ts) and cuts a client that reads
   * nothing for {@link REPLAY_STALL_MS} as lagging (as SSE does).
   */
  private congested(): Promise<void> | undefined {
    const highWater = Math.min(256 * 1024, Math.floor(this.limits.maxBufferedBytes / 4));
    if (this.closed || this.socket.bufferedAmount <= highWater) return undefined;
    this.drained ??= this.drain(highWater).finally(() => {
      this.drained = undefined;
    });
    return this.drained;
  }

  /** Resolves once the socket holds at most `highWater` unsent bytes, or closed, or was cut. */
  private drain(highWater: number): Promise<void> {
    return waitForDrain({
      buffered: () => this.socket.bufferedAmount,
      taken: () => takenBy(this.raw),
      highWater,
      // ws writes straight to the TCP socket (no compression): its `drain` is ws's buffer emptied.
      drains: [this.raw],
      closes: [this.socket],
      ended: () => this.closed,
      stallMs: REPLAY_STALL_MS,
      onStall: () => this.cutLagging(),
    });
  }

  private send(frame: Frame): void {
    this.sendRaw(JSON.stringify(frame));
  }

  private sendRaw(text: string): void {
    if (this.closed || this.socket.readyState !== this.socket.OPEN) return;
    if (this.socket.bufferedAmount > this.limits.maxBufferedBytes) {
      this.cutLagging();
      return;
    }
    this.socket.send(text);
  }

  /** Too slow: one final lagging event per subscription, then close; the client resumes with its offsets. */
  private cutLagging(): void {
    if (this.closed) return;
    this.s.metrics.lagging.ws++;
    for (const [key, subscription] of this.subscriptions) {
      const [projectId, sessionId] = key.split("/");
      this.socket.send(
        JSON.stringify({
          kind: "event",
          projectId,
          ...(sessionId ? { sessionId } : {}),
          event: { type: "stream_lagging", lastOffset: subscription.offset },
        }),
      );
    }
    this.close(1013, "client too slow");
  }

  private releaseSlot(key: string): void {
    this.slots.get(key)?.();
    this.slots.delete(key);
  }

  private async dispose(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const release of this.slots.values()) release();
    this.slots.clear();
    const subs = [...this.subscriptions.values()];
    this.subscriptions.clear();
    await Promise.all(subs.map((s) => s.close()));
  }
}
