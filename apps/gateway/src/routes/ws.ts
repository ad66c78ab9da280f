/**
 * `GET /v1/ws`: the multiplexed WebSocket (see ws/ws-connection.ts). Frames are capped like the
 * REST routes that take images (ws/websocket-plugin.ts) and must arrive within
 * PI_FLEET_REQUEST_TIMEOUT_MS (ws/message-deadline.ts); sockets close with 1001 when the gateway
 * shuts down. A GET without an upgrade answers 400 PF_ERR_REQUEST_INVALID.
 */
import { ApiError } from "@pi-fleet/contracts";
import type { FastifyInstance } from "fastify";
import { socketClient } from "../inject-route.ts";
import { socketRequestBudget } from "../limits/rate-limit.ts";
import { messageDeadline } from "../ws/message-deadline.ts";
import { reserveSocketSlot, takeSocketSlot } from "../ws/socket-slots.ts";
import { WsConnection } from "../ws/ws-connection.ts";

/** Open sockets of this process. */
export const openSockets = new Set<WsConnection>();

export async function wsRoutes(app: FastifyInstance): Promise<void> {
  const s = app.services;
  const budget = socketRequestBudget(app);
  app.route({
    method: "GET",
    url: "/v1/ws",
    // The credential's stream slot, before the upgrade: 429 past PI_FLEET_MAX_STREAMS_PER_KEY.
    preHandler: async (request) => reserveSocketSlot(s, request),
    // A plain GET (no upgrade) is answered like the RPC socket's: 400 in the error shape.
    handler: async () => {
      throw new ApiError("PF_ERR_REQUEST_INVALID", "this route speaks WebSocket: send an upgrade request");
    },
    wsHandler: (socket, request) => {
      // First, before ws reads anything: a message must arrive within the request timeout.
      messageDeadline(socket, request.raw.socket, s.env.PI_FLEET_REQUEST_TIMEOUT_MS);
      let connection: WsConnection | undefined;
      const release = takeSocketSlot(request, () => connection?.close(1008, "credential revoked"));
      connection = new WsConnection(socket, request.raw.socket, app, request.auth, socketClient(request), {
        maxBufferedBytes: s.env.PI_FLEET_CLIENT_MAX_BUFFER_BYTES,
        // Each subscription also takes one of the credential's PI_FLEET_MAX_STREAMS_PER_KEY slots.
        maxSubscriptions: 1000,
        pingIntervalMs: s.env.PI_FLEET_SSE_HEARTBEAT_MS,
        // A subscribe costs one request of the org's PI_FLEET_ORG_RATE_LIMIT, as over REST.
        spendRequest: () => budget(request),
        streamOpenTimeoutMs: s.env.PI_FLEET_REQUEST_TIMEOUT_MS,
      });
      const open = connection;
      openSockets.add(open);
      s.metrics.wsConnections++;
      socket.on("close", () => {
        release();
        openSockets.delete(open);
        s.metrics.wsConnections--;
      });
    },
  });
}
