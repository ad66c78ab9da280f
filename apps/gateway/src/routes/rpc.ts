/**
 * `GET /v1/projects/{projectId}/sessions/{id}/rpc`: pi's RPC protocol over a WebSocket, one
 * session per socket (see rpc/rpc-connection.ts). Auth is REST's (the upgrade request carries
 * `Authorization: Bearer`); an unknown session, or another org's, is a 404 before the upgrade.
 * Frames are capped like the prompt route's body (ws/websocket-plugin.ts; a prompt frame may carry
 * images) and must arrive within PI_FLEET_REQUEST_TIMEOUT_MS (ws/message-deadline.ts); sockets
 * close with 1001 when the gateway shuts down (app.ts), 1008 when their credential is revoked.
 */
import { ApiError, ErrorResponse, SessionParams } from "@pi-fleet/contracts";
import type { FastifyInstance } from "fastify";
import { socketClient } from "../inject-route.ts";
import { requireSession } from "../lookups.ts";
import { RpcConnection } from "../rpc/rpc-connection.ts";
import { messageDeadline } from "../ws/message-deadline.ts";
import { reserveSocketSlot, takeSocketSlot } from "../ws/socket-slots.ts";

/** Open RPC sockets of this process. */
export const openRpcSockets = new Set<RpcConnection>();

/** A queued prompt is answered after this long even if its run has not started (ms). */
const PROMPT_ANSWER_WAIT_MS = 20_000;

type Params = { projectId: string; id: string };

export async function rpcRoutes(app: FastifyInstance): Promise<void> {
  const s = app.services;
  app.route({
    method: "GET",
    url: "/v1/projects/:projectId/sessions/:id/rpc",
    schema: {
      tags: ["sessions"],
      summary: "WebSocket speaking pi's RPC protocol (`pi --mode rpc`) for the session.",
      description:
        "Upgrade to a WebSocket (`Authorization: Bearer` on the upgrade request in keyed mode). One text frame per JSON record, as one line of `pi --mode rpc`: pi's commands (`{id?, type, …}`), responses (`{id?, type: \"response\", command, success, data | error}`), events and `extension_ui_request` / `extension_ui_response` records. New sessions from `new_session` / `fork` / `clone` (and `switch_session` with a session id as `sessionPath`) become the socket's session. Close codes: 1000 the session was deleted, 1001 gateway shutdown, 1008 credential revoked, 1009 frame too large or a message not received within PI_FLEET_REQUEST_TIMEOUT_MS, 1011 stream unavailable, 1013 client too slow. Past the key's open streams (PI_FLEET_MAX_STREAMS_PER_KEY) the upgrade is refused with 429. A request without an upgrade answers 400.",
      params: SessionParams,
      response: {
        101: { description: "Switching to the WebSocket protocol.", type: "null" },
        400: ErrorResponse,
        401: ErrorResponse,
        404: ErrorResponse,
        429: ErrorResponse,
      },
    },
    // Before the upgrade: an unknown session (or another org's) is an HTTP 404, never a socket.
    preHandler: async (request) => {
      const { projectId, id } = request.params as Params;
      await requireSession(s, request.auth.org, projectId, id);
      // The credential's stream slot, before the upgrade: 429 past PI_FLEET_MAX_STREAMS_PER_KEY.
      reserveSocketSlot(s, request);
    },
    handler: async () => {
      throw new ApiError("PF_ERR_REQUEST_INVALID", "this route speaks WebSocket: send an upgrade request");
    },
    wsHandler: (socket, request) => {
      // First, before ws reads anything: a message must arrive within the request timeout.
      messageDeadline(socket, request.raw.socket, s.env.PI_FLEET_REQUEST_TIMEOUT_MS);
      const { projectId, id } = request.params as Params;
      let connection: RpcConnection | undefined;
      const release = takeSocketSlot(request, () => connection?.close(1008, "credential revoked"));
      connection = new RpcConnection(
        socket,
        app,
        request.auth,
        socketClient(request),
        { projectId, sessionId: id },
        {
          maxBufferedBytes: s.env.PI_FLEET_CLIENT_MAX_BUFFER_BYTES,
          promptAnswerWaitMs: PROMPT_ANSWER_WAIT_MS,
          pingIntervalMs: s.env.PI_FLEET_SSE_HEARTBEAT_MS,
          // Like the upgrade request itself: the socket is of no use until its stream is live.
          streamOpenTimeoutMs: s.env.PI_FLEET_REQUEST_TIMEOUT_MS,
        },
      );
      const open = connection;
      openRpcSockets.add(open);
      s.metrics.rpcConnections++;
      socket.on("close", () => {
        release();
        openRpcSockets.delete(open);
        s.metrics.rpcConnections--;
      });
    },
  });
}
