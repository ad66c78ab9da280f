/**
 * Shapes shared by the SSE and WebSocket helpers: wire events, stream items, resume options and
 * the typed WebSocket request methods (derived from the generated OpenAPI path types, so a
 * `request("prompt", …)` takes the same body and resolves the same answer as `POST …/prompt`).
 */
import type { paths } from "./generated/openapi.ts";

/**
 * One event of a session stream or of a project's activity stream: a pi `AgentSessionEvent` in
 * lean form (`message_update` carries only its delta), an `extension_ui_request` /
 * `extension_error`, or a fleet event (`run_queued`, `run_started`, `run_finished`, …,
 * `stream_reset`). Fleet events carry `runId`. pi's shapes are forwarded as they are, hence the
 * open index signature.
 */
export interface WireEvent {
  type: string;
  [key: string]: unknown;
}

/**
 * Sent instead of an entry when the resume cursor can no longer be honoured: `trimmed` (the cursor
 * is older than retention; `firstOffset` is the first retained entry) or `lost` (the cursor is
 * ahead of the stream, or Redis lost the stream). The retained entries follow. It has no offset:
 * reload history (`GET …/sessions/{id}`) and carry on.
 */
export interface StreamResetEvent extends WireEvent {
  type: "stream_reset";
  reason: "trimmed" | "lost";
  firstOffset?: string;
}

/**
 * One item yielded by {@link PiFleetClient.events}, {@link PiFleetClient.projectEvents} and
 * {@link PiFleetSubscription}: the event and its stream offset. `offset` is absent only for a
 * `stream_reset` event. Offsets are Redis stream ids (`<ms>-<seq>`) and increase strictly.
 */
export interface StreamItem {
  offset?: string;
  event: WireEvent;
}

/**
 * Capped exponential backoff between reconnect attempts: the n-th consecutive failed attempt
 * (from 0) waits a random time in `[d/2, d]` with `d = min(maxDelayMs, initialDelayMs · 2ⁿ)`
 * (jitter spreads a fleet of clients after a gateway restart). The count resets once a
 * connection delivers something.
 */
export interface ReconnectOptions {
  /** First delay (ms); default 250. */
  initialDelayMs?: number;
  /** Cap (ms); default 30 000. */
  maxDelayMs?: number;
}

/** Why a stream or socket is reconnecting, reported to `onReconnect` before the delay. */
export interface ReconnectInfo {
  /** Consecutive attempts without a successful delivery so far (0 for the first). */
  attempt: number;
  /** Delay before the next attempt (ms); 0 after `stream_lagging`. */
  delayMs: number;
  /** The offset the next connection resumes after (`undefined`: live only). */
  cursor: string | undefined;
  /**
   * `closed`: the server ended the stream; `error`: network error; `status`: a retryable HTTP
   * status (429, 5xx); `lagging`: the server cut a slow client; `idle`: nothing (not even a
   * heartbeat or pong) arrived within the idle timeout.
   */
  reason: "closed" | "error" | "status" | "lagging" | "idle";
  /** The error or status, when there is one. */
  error?: unknown;
}

/** Resume options of one stream (SSE) or subscription (WebSocket). */
export interface StreamOptions {
  /**
   * Start after this offset: a previous item's `offset`, the `offset` of a prompt response (starts
   * exactly at that run), `lastOffset` of `GET …/state`, or `"0"` for everything retained.
   * Absent: live only — nothing before the first connection is replayed; the gateway tells where
   * the stream started (SSE: an `id:` on its first frame; WebSocket: `offset` on `subscribed`),
   * so a reconnect before the first event resumes from there, with no gap.
   */
  after?: string;
  /** Stops the stream: iteration ends normally (no error) when it aborts. */
  signal?: AbortSignal;
}

/** Options of {@link PiFleetClient.events} / {@link PiFleetClient.projectEvents}. */
export interface EventsOptions extends StreamOptions {
  /** Backoff between reconnects. */
  reconnect?: ReconnectOptions;
  /**
   * Reconnect when nothing (event or heartbeat comment) arrived for this long (ms); default
   * 60 000 (the gateway sends a heartbeat every 15 s by default); 0 disables.
   */
  idleTimeoutMs?: number;
  /** Called before each reconnect (for logging or metrics). */
  onReconnect?: (info: ReconnectInfo) => void;
}

type SessionPath = "/v1/projects/{projectId}/sessions/{id}";
type JsonOf<T> = T extends { content: { "application/json": infer B } } ? B : never;
/** The JSON request body of an operation (`{}` when it has none). */
type BodyOf<Op> = Op extends { requestBody: infer R }
  ? [JsonOf<NonNullable<R>>] extends [never]
    ? Record<never, never>
    : JsonOf<NonNullable<R>>
  : Record<never, never>;
/** The JSON body of an operation's 200 answer. */
type ResultOf<Op> = Op extends { responses: { 200: infer R } } ? JsonOf<R> : unknown;

/** Ids every WebSocket request names, plus the optional `Idempotency-Key` (honoured by `prompt`). */
export interface WsRequestIds {
  projectId: string;
  sessionId: string;
  idempotencyKey?: string;
}

type Method<Op, Extra = Record<never, never>> = {
  params: WsRequestIds & Extra & BodyOf<Op>;
  result: ResultOf<Op>;
};

/**
 * The operations a WebSocket `request` may name, each with its params (ids + the REST body) and
 * its result (the REST 200 answer): the gateway executes them through the REST routes.
 */
export interface WsMethods {
  prompt: Method<paths[`${SessionPath}/prompt`]["post"]>;
  steer: Method<paths[`${SessionPath}/steer`]["post"]>;
  follow_up: Method<paths[`${SessionPath}/follow_up`]["post"]>;
  abort: Method<paths[`${SessionPath}/abort`]["post"]>;
  commands: Method<paths[`${SessionPath}/commands`]["post"]>;
  extension_ui_response: Method<
    paths[`${SessionPath}/extension-ui/{requestId}/response`]["post"],
    { requestId: string }
  >;
  state: Method<paths[`${SessionPath}/state`]["get"]>;
  messages: Method<paths[SessionPath]["get"]>;
}

/** A WebSocket request method name. */
export type WsMethod = keyof WsMethods;
/** The params of WebSocket request `M`. */
export type WsRequestParams<M extends WsMethod> = WsMethods[M]["params"];
/** The result of WebSocket request `M` (what the REST route answers with 200). */
export type WsRequestResult<M extends WsMethod> = WsMethods[M]["result"];
