/**
 * Runs a REST route in-process (`app.inject`) on behalf of a socket client, with the client's
 * own `Authorization` header: the WebSocket (`/v1/ws`) and pi RPC sockets execute requests through
 * the routes themselves, so auth, validation, limits and semantics are exactly REST's.
 */
import type { FastifyInstance } from "fastify";

/** Who a socket's requests are made for: its upgrade credentials and its address (for the audit log). */
export interface SocketClient {
  /** `authorization` of the upgrade request, when it had one. */
  headers: Record<string, string>;
  /** The client's address as the upgrade request saw it (`request.ip`). */
  remoteAddress: string;
}

/** Copies what a socket's requests need from its upgrade request. */
export function socketClient(request: { headers: Record<string, unknown>; ip: string }): SocketClient {
  const headers: Record<string, string> = {};
  if (typeof request.headers.authorization === "string")
    headers.authorization = request.headers.authorization;
  return { headers, remoteAddress: request.ip };
}

/** One route call: method, URL, extra headers, JSON body. */
export interface RouteCall {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  url: string;
  headers?: Record<string, string>;
  /**
   * Sent as JSON when defined: a Buffer is the body as it is (from {@link jsonBody}), anything
   * else is serialised.
   */
  payload?: unknown;
}

/**
 * `value` serialised as a JSON body (UTF-8 bytes) for {@link RouteCall.payload}. Serialising when
 * the call is built lets the caller drop the object (a prompt's images) while the route runs, and
 * a Buffer is handed to the route as it is, where a string would be kept beside its UTF-8 copy
 * until the request ends.
 * @throws TypeError for what JSON.stringify refuses (cycles, BigInt)
 */
export function jsonBody(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

/**
 * Executes `call` as `client` (the socket's upgrade credentials and address) and returns the status
 * and the parsed JSON body (`{error: <text>}` when the body is not JSON). Never throws for an HTTP
 * error status; rejects only when the app itself fails.
 */
export async function injectRoute(
  app: FastifyInstance,
  client: SocketClient,
  call: RouteCall,
): Promise<{ status: number; body: unknown }> {
  const res = await app.inject({
    method: call.method,
    url: call.url,
    remoteAddress: client.remoteAddress,
    headers: {
      ...client.headers,
      ...call.headers,
      ...(call.payload === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(call.payload === undefined
      ? {}
      : { payload: Buffer.isBuffer(call.payload) ? call.payload : jsonBody(call.payload) }),
  });
  let body: unknown;
  try {
    body = res.json();
  } catch {
    body = { error: res.body };
  }
  return { status: res.statusCode, body };
}
