/**
 * `@pi-fleet/client`: a typed client for the pi-fleet gateway.
 *
 * - `api`: openapi-fetch typed by `paths`, generated from `openapi/openapi.json` by
 *   openapi-typescript (`npm run client:generate`; `npm run openapi` regenerates both).
 * - `events()` / `projectEvents()`: SSE streams that resume from the last offset by themselves.
 * - `ws()`: the multiplexed `/v1/ws` socket, reconnecting and resubscribing by itself.
 */
export { createPiFleetClient, type PiFleetClient, type PiFleetClientOptions } from "./client.ts";
export { type ApiErrorBody, PiFleetApiError, PiFleetError, PiFleetSocketError } from "./errors.ts";
export type { components, paths } from "./generated/openapi.ts";
export { compareOffsets } from "./resume.ts";
export {
  defaultWebSocketFactory,
  type PiFleetSocket,
  type PiFleetSubscription,
  type RequestOptions,
  type SocketOptions,
  type WebSocketFactory,
  WS_PROTOCOL,
  type WsWelcome,
} from "./socket.ts";
export type {
  EventsOptions,
  ReconnectInfo,
  ReconnectOptions,
  StreamItem,
  StreamOptions,
  StreamResetEvent,
  WireEvent,
  WsMethod,
  WsMethods,
  WsRequestIds,
  WsRequestParams,
  WsRequestResult,
} from "./types.ts";
