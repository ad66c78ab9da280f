/**
 * `GET /v1/ws`: the multiplexed WebSocket (see ws/ws-connection.ts). Frames are capped like the
 * REST routes that take images (ws/websocket-plugin.ts); sockets close with 1001 when the gateway
 * shuts down.
 */
import type { FastifyInstance } from "fastify";
import { socketClient } from "../inject-route.ts";
import { closeSocket } from "../ws/socket-lifecycle.ts";
import { WsConnection } from "../ws/ws-connection.ts";

/** Open sockets of this process. */
export const openSockets = new Set<WsConnection>();

export async function wsRoutes(app: FastifyInstance): Promise<void> {
  const s = app.services;
  app.get("/v1/ws", { websocket: true }, (socket, request) => {
    let release: () => void;
    let connection: WsConnection | undefined;
    try {
      release = s.connections.acquire(request.auth, () => connection?.close(1008, "credential revoked"));
    } catch (err) {
      closeSocket(socket, 1008, (err as Error).message.slice(0, 120));
      return;
    }
    connection = new WsConnection(socket, app, request.auth, socketClient(request), {
      maxBufferedBytes: s.env.PI_FLEET_CLIENT_MAX_BUFFER_BYTES,
      // Each subscription also takes one of the credential's PI_FLEET_MAX_STREAMS_PER_KEY slots.
      maxSubscriptions: 1000,
      pingIntervalMs: s.env.PI_FLEET_SSE_HEARTBEAT_MS,
    });
    const open = connection;
    openSockets.add(open);
    s.metrics.wsConnections++;
    socket.on("close", () => {
      release();
      openSockets.delete(open);
      s.metrics.wsConnections--;
    });
  });
}
