/** `createPiFleetClient`: the typed REST client plus resumable SSE and WebSocket helpers. */
import createClient, { type Client, defaultPathSerializer } from "openapi-fetch";
import { PiFleetError } from "./errors.ts";
import type { paths } from "./generated/openapi.ts";
import {
  defaultWebSocketFactory,
  openSocket,
  type PiFleetSocket,
  type SocketOptions,
  type WebSocketFactory,
} from "./socket.ts";
import { sseEvents } from "./sse.ts";
import type { EventsOptions, StreamItem } from "./types.ts";

/** Options of {@link createPiFleetClient}. */
export interface PiFleetClientOptions {
  /** The gateway's origin, e.g. `http://127.0.0.1:4001` (paths start with `/v1`). */
  baseUrl: string;
  /** An org API key, sent as `Authorization: Bearer <apiKey>` (omit in open mode). */
  apiKey?: string;
  /** The fetch to use for REST and SSE; default `globalThis.fetch`. */
  fetch?: typeof globalThis.fetch;
  /** Extra headers sent with every REST, SSE and (where possible) WebSocket request. */
  headers?: Record<string, string>;
  /**
   * Opens the WebSocket of {@link PiFleetClient.ws}; default: the global `WebSocket`. A socket of
   * the `ws` package (`(url, headers) => new WsWebSocket(url, { headers }) as unknown as WebSocket`)
   * also reports the HTTP status of a refused handshake (401/403 stop the socket, 429 waits for
   * `Retry-After`); with the default the socket asks the gateway with a plain GET instead; another
   * factory gets neither.
   */
  webSocket?: WebSocketFactory;
}

/** A pi-fleet client; see {@link createPiFleetClient}. */
export interface PiFleetClient {
  /**
   * The REST API: an openapi-fetch client typed by the generated `paths`, e.g.
   * `api.GET("/v1/projects/{projectId}/sessions/{id}/state", {params: {path: {projectId, id}}})`
   * resolves `{data}` (the typed 200 body) or `{error}` (the typed error body, `{error, code}`),
   * with `response` for the status and headers. It never throws for an HTTP error status.
   */
  readonly api: Client<paths>;
  /**
   * A session's events over SSE (`GET …/sessions/{id}/events`), in order, until `opts.signal`
   * aborts or the loop stops. After any disconnect (network error, the gateway ending the stream
   * or restarting, a keepalive timeout) it reconnects with `Last-Event-ID` = the last offset
   * delivered, with jittered capped exponential backoff, and drops anything at or before that
   * offset, so nothing is missed or repeated. `stream_lagging` (the gateway cut a slow client) is
   * not yielded: it reconnects at once. `stream_reset` is yielded (reload history, carry on) and
   * the cursor restarts at what the stream retains. `stream_ended` (the session or its project
   * was deleted) is yielded last and iteration ends. Throws {@link PiFleetApiError} when the stream
   * is refused for good (400 bad cursor, 401/403, 404); retries 429 and 5xx.
   */
  events(
    projectId: string,
    sessionId: string,
    opts?: EventsOptions,
  ): AsyncGenerator<StreamItem, void, undefined>;
  /**
   * A project's activity over SSE (`GET /v1/projects/{projectId}/events`): `session_created`,
   * `session_deleted`, `run_queued`, `run_started` and each run's terminal event as
   * `{type, sessionId, runId, status}` records, with the same resume rules as {@link events}.
   */
  projectEvents(projectId: string, opts?: EventsOptions): AsyncGenerator<StreamItem, void, undefined>;
  /**
   * Opens a {@link PiFleetSocket} on `/v1/ws` (it connects at once and reconnects by itself).
   * @throws PiFleetError when `opts.maxQueuedEvents` is not an integer ≥ 16 (nor `Infinity`)
   */
  ws(opts?: SocketOptions): PiFleetSocket;
}

/**
 * Creates a client for the gateway at `baseUrl`. Nothing connects until used; `ws()` opens a new
 * socket on each call.
 *
 * @example
 * const client = createPiFleetClient({ baseUrl: "http://127.0.0.1:4001", apiKey });
 * const { data } = await client.api.POST("/v1/projects/{projectId}/sessions/{id}/prompt", {
 *   params: { path: { projectId, id: sessionId } },
 *   body: { text: "hello" },
 * });
 * for await (const { offset, event } of client.events(projectId, sessionId, { after: data?.offset })) {
 *   if (event.type === "run_finished") break;
 * }
 */
/**
 * A path segment for an id: percent-encoded, and never "", "." or ".." — URL parsing resolves
 * those away (even percent-encoded), so `…/sessions/../events` would reach another route.
 * @throws PiFleetError for such an id
 */
function segment(id: string): string {
  if (id === "" || id === "." || id === "..") throw new PiFleetError(`invalid id ${JSON.stringify(id)}`);
  return encodeURIComponent(id);
}

export function createPiFleetClient(options: PiFleetClientOptions): PiFleetClient {
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const headers: Record<string, string> = { ...options.headers };
  if (options.apiKey !== undefined) headers.authorization = `Bearer ${options.apiKey}`;
  const fetchFn: typeof globalThis.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const api = createClient<paths>({
    baseUrl,
    headers,
    fetch: (request) => fetchFn(request),
    pathSerializer: (pathname, params) => {
      for (const value of Object.values(params)) segment(String(value)); // refuses "." and ".."
      return defaultPathSerializer(pathname, params);
    },
  });
  const transport = { fetch: fetchFn, headers };
  return {
    api,
    events: (projectId, sessionId, opts) =>
      sseEvents(
        `${baseUrl}/v1/projects/${segment(projectId)}/sessions/${segment(sessionId)}/events`,
        transport,
        opts,
      ),
    projectEvents: (projectId, opts) =>
      sseEvents(`${baseUrl}/v1/projects/${segment(projectId)}/events`, transport, opts),
    ws: (opts) =>
      openSocket(
        `${baseUrl.replace(/^http/i, "ws")}/v1/ws`,
        headers,
        options.webSocket ?? defaultWebSocketFactory,
        opts,
        // The default factory opens exactly that URL with these headers: a plain GET of it tells
        // why a handshake failed (the WebSocket API shows no status). A custom one may not.
        options.webSocket === undefined ? fetchFn : undefined,
      ),
  };
}
