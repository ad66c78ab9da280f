/**
 * `GET /v1/ws`: the multiplexed WebSocket (see ws/ws-connection.ts). Frames are capped at the
 * body limit; sockets close with 1001 when the gateway shuts down.
 */
import websocket from "@fastify/websocket";
import type { FastifyInstance } from "fastify";
import { WsConnection } from "../ws/ws-connection.ts";

/** Open sockets of this process. */
export const openSockets = new Set<WsConnection>();

export async function wsRoutes(app: FastifyInstance): Promise<void> {
  const s = app.services;
  await app.register(websocket, { options: { maxPayload: s.env.PI_FLEET_MAX_BODY_BYTES } });
  app.get("/v1/ws", { websocket: true }, (socket, request) => {
    const headers: Record<string, string> = {};
    if (typeof request.headers.authorization === "string")
      headers.authorization = request.headers.authorization;
    const connection = new WsConnection(socket, app, headers, {
      maxBufferedBytes: s.env.PI_FLEET_CLIENT_MAX_BUFFER_BYTES,
      maxSubscriptions: 1000,
    });
    openSockets.add(connection);
    socket.on("close", () => openSockets.delete(connection));
  });
}
