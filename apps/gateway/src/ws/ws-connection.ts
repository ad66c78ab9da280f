/**
 * One `/v1/ws` connection (API.md "WebSocket"): `hello` → `welcome`; `subscribe` / `unsubscribe`
 * session streams (or a project's activity when `sessionId` is absent) with the same replay,
 * reset and lag rules as SSE; `request` → `response` for session operations, executed through
 * the REST routes themselves (`inject`), so validation, limits and semantics are identical;
 * `ping` → `pong`. A client whose unsent bytes exceed the bound gets a final `stream_lagging`
 * event per subscription and a close (1013); on shutdown every socket closes with 1001. Each
 * subscription holds one of the credential's stream slots (PI_FLEET_MAX_STREAMS_PER_KEY); pings,
 * close deadlines and frame flow are socket-lifecycle.ts's.
 */
import { randomUUID } from "node:crypto";
import { isOffset, WS_PROTOCOL, WsClientFrame } from "@pi-fleet/contracts";
import { type StreamEntry, type StreamRef, StreamSubscription } from "@pi-fleet/streams";
import type { FastifyInstance } from "fastify";
import Compile from "typebox/compile";
import type { WebSocket } from "ws";
import type { RequestAuth } from "../auth/request-auth.ts";
import { isRedisUnavailable } from "../error-handler.ts";
import { injectRoute, type SocketClient } from "../inject-route.ts";
import { TOO_DEEP_MESSAGE, tooDeep } from "../json-depth.ts";
import { pendingUi } from "../routes/events.ts";
import type { GatewayServices } from "../services.ts";
import { closeSocket, FrameFlow, keepAlive } from "./socket-lifecycle.ts";
import { requestRoute } from "./ws-requests.ts";

const validate = Compile(WsClientFrame);

/** A replay that makes no progress for this long (ms) is cut with `stream_lagging` (as SSE's). */
const REPLAY_STALL_MS = 10_000;

/** Limits of one connection. */
export interface WsLimits {
  maxBufferedBytes: number;
  maxSubscriptions: number;
  /** WebSocket ping interval (ms); a socket silent for two is cut (socket-lifecycle.ts). */
  pingIntervalMs: number;
}

type Frame = { kind: string; [key: string]: unknown };

/** Serves one WebSocket. */
export class WsConnection {
  readonly id = randomUUID();
  private readonly socket: WebSocket;
  private readonly app: FastifyInstance;
  private readonly s: GatewayServices;
  private readonly limits: WsLimits;
  private readonly client: SocketClient;
  private readonly flow: FrameFlow;
  /** Who authenticated the upgrade request; subscriptions are scoped to its org. */
  readonly auth: RequestAuth;
  private readonly subscriptions = new Map<string, StreamSubscription>();
  /** Streams whose subscribe is looking up its project or session (see subscribe()). */
  private readonly subscribing = new Set<string>();
  /** Of those, the ones an unsubscribe arrived for meanwhile. */
  private readonly cancelled = new Set<string>();
  /** Each subscription's slot among the credential's open streams (PI_FLEET_MAX_STREAMS_PER_KEY). */
  private readonly slots = new Map<string, () => void>();
  private greeted = false;
  private closed = false;

  constructor(
    socket: WebSocket,
    app: FastifyInstance,
    auth: RequestAuth,
    client: SocketClient,
    limits: WsLimits,
  ) {
    this.socket = socket;
    this.auth = auth;
    this.app = app;
    this.s = app.services;
    this.client = client;
    this.limits = limits;
    this.flow = new FrameFlow(socket);
    keepAlive(socket, limits.pingIntervalMs);
    socket.on("message", (data, isBinary) => {
      const text = isBinary ? null : data.toString();
      this.flow.track(this.onMessage(text)).catch((err: unknown) => this.failedFrame(text, err));
    });
    socket.on("close", () => void this.dispose());
    socket.on("error", () => void this.dispose());
  }

  /** Closes the socket (1001 on shutdown). */
  close(code: number, reason: string): void {
    // Also when already closing (cut as lagging): a shutdown then shortens its close deadline.
    closeSocket(this.socket, code, reason);
    void this.dispose();
  }

  private async onMessage(text: string | null): Promise<void> {
    if (this.closed) return;
    let frame: unknown;
    try {
      if (text === null) throw new Error("binary frames are not accepted");
      frame = JSON.parse(text);
    } catch {
      this.send({ kind: "error", code: "PF_ERR_REQUEST_MALFORMED_JSON", error: "frames are JSON text" });
      return;
    }
    if (tooDeep(frame)) {
      this.send({
        kind: "error",
        code: "PF_ERR_REQUEST_INVALID",
        error: `invalid frame: ${TOO_DEEP_MESSAGE}`,
      });
      return;
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
      return;
    }
    const f = frame as Frame;
    if (!this.greeted && f.kind !== "hello") {
      this.send({ kind: "error", code: "PF_ERR_REQUEST_INVALID", error: "send hello first" });
      return;
    }
    switch (f.kind) {
      case "hello":
        this.greeted = true;
        this.send({ kind: "welcome", protocol: WS_PROTOCOL, connectionId: this.id });
        return;
      case "ping":
        this.send({ kind: "pong", ...(f.id === undefined ? {} : { id: f.id }) });
        return;
      case "subscribe":
        await this.subscribe(
          f as Frame & { projectId: string; sessionId?: string; after?: string; id?: string },
        );
        return;
      case "unsubscribe":
        await this.unsubscribe(f as Frame & { projectId: string; sessionId?: string; id?: string });
        return;
      case "request":
        await this.request(
          f as Frame & { id: string | number; method: string; params: Record<string, unknown> },
        );
        return;
    }
  }

  private async subscribe(f: {
    projectId: string;
    sessionId?: string;
    after?: string;
    id?: string;
  }): Promise<void> {
    const key = `${f.projectId}/${f.sessionId ?? ""}`;
    const fail = (code: string, error: string) => this.send({ kind: "error", id: f.id, code, error });
    if (f.after !== undefined && !isOffset(f.after))
      return fail("PF_ERR_STREAM_CURSOR_INVALID", "invalid stream offset");
    if (this.subscriptions.has(key) || this.subscribing.has(key))
      return fail("PF_ERR_REQUEST_INVALID", "already subscribed");
    if (this.subscriptions.size + this.subscribing.size >= this.limits.maxSubscriptions) {
      return fail(
        "PF_ERR_REQUEST_TOO_LARGE",
        `at most ${this.limits.maxSubscriptions} subscriptions per connection`,
      );
    }
    // Reserved while the lookup is in flight: frames are handled concurrently, so a second
    // subscribe to the same stream (or past the cap) must see this one.
    this.subscribing.add(key);
    let exists: unknown;
    let cancelled = false;
    try {
      exists = f.sessionId
        ? await this.s.registry.getSession(this.auth.org, f.projectId, f.sessionId)
        : await this.s.registry.getProject(this.auth.org, f.projectId);
    } finally {
      this.subscribing.delete(key);
      cancelled = this.cancelled.delete(key); // also when the lookup failed: never left behind
    }
    // The socket closed during the lookup: dispose() has run, nothing may be added now.
    if (this.closed) return;
    if (cancelled) {
      return fail("PF_ERR_REQUEST_INVALID", "unsubscribed before the subscription was set up");
    }
    if (!exists) {
      return fail(
        f.sessionId ? "PF_ERR_SESSION_NOT_FOUND" : "PF_ERR_PROJECT_NOT_FOUND",
        "unknown project or session",
      );
    }
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
      congested: () => this.congested(),
    });
    this.subscriptions.set(key, subscription);
    try {
      // Watching the stream before the ack, as SSE sends its head only after it: a client that
      // acts on `subscribed` (prompts) misses nothing written after it.
      await subscription.open();
      if (this.subscriptions.get(key) !== subscription) return;
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

  private async unsubscribe(f: { projectId: string; sessionId?: string; id?: string }): Promise<void> {
    const key = `${f.projectId}/${f.sessionId ?? ""}`;
    // A subscribe still looking up its stream: it stops there (and answers an error).
    if (this.subscribing.has(key)) this.cancelled.add(key);
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

  private async request(f: {
    id: string | number;
    method: string;
    params: Record<string, unknown>;
  }): Promise<void> {
    const { status, body } = await injectRoute(this.app, this.client, requestRoute(f.method, f.params));
    if (status < 400) this.send({ kind: "response", id: f.id, ok: true, result: body });
    else this.send({ kind: "response", id: f.id, ok: false, status, error: body });
  }

  /**
   * A frame whose handling failed (Redis unreachable, a bug): an error frame answers it (with its
   * id when it had one), the socket stays open, the failure is logged. Never throws.
   */
  private failedFrame(text: string | null, err: unknown): void {
    let id: unknown;
    try {
      id = text === null ? undefined : (JSON.parse(text) as { id?: unknown } | null)?.id;
    } catch {
      id = undefined;
    }
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
   * Replay backpressure: waits while the socket holds more than a quarter of the client limit. A
   * client that reads nothing for {@link REPLAY_STALL_MS} is cut as lagging (as SSE does).
   */
  private congested(): Promise<void> | undefined {
    const highWater = Math.min(256 * 1024, Math.floor(this.limits.maxBufferedBytes / 4));
    if (this.closed || this.socket.bufferedAmount <= highWater) return undefined;
    let buffered = this.socket.bufferedAmount;
    let progressAt = performance.now();
    return new Promise((resolve) => {
      const check = () => {
        if (this.closed || this.socket.bufferedAmount <= highWater) return resolve();
        if (this.socket.bufferedAmount < buffered) {
          buffered = this.socket.bufferedAmount;
          progressAt = performance.now();
        } else if (performance.now() - progressAt > REPLAY_STALL_MS) {
          this.cutLagging();
          return resolve();
        }
        setTimeout(check, 10);
      };
      setTimeout(check, 10);
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
