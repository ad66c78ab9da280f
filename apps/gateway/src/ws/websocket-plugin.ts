/**
 * @fastify/websocket, registered once on the root instance for both socket routes: `GET /v1/ws`
 * (routes/ws.ts) and the per-session RPC socket (routes/rpc.ts).
 *
 * Frames are capped like the REST routes that take images (`inputBodyLimit`: text and JSON plus
 * PI_FLEET_MAX_IMAGES images), with room for a frame's envelope: a prompt with images that REST
 * accepts is accepted over a socket too, and the route behind a socket request (run in-process)
 * still enforces its exact limit. A larger frame closes the socket with 1009 (ws), and so does a
 * message that does not arrive within PI_FLEET_REQUEST_TIMEOUT_MS (message-deadline.ts).
 */
import websocket from "@fastify/websocket";
import type { FastifyInstance } from "fastify";
import { inputBodyLimit } from "../prompt-input.ts";

/** Bytes a socket frame may carry around the REST body it stands for (`{"kind":"request",…}`). */
export const FRAME_ENVELOPE_BYTES = 64 * 1024;

/** Registers the plugin (call once, before the socket routes) and ends refused upgrades. */
export async function registerWebSockets(app: FastifyInstance): Promise<void> {
  await app.register(websocket, {
    options: { maxPayload: inputBodyLimit(app.services.env) + FRAME_ENVELOPE_BYTES },
    // A client error (an oversized frame: ws has already closed with 1009), not a server fault.
    errorHandler: (err, socket, request) => {
      request.log.debug({ err: err.message }, "socket error");
      socket.terminate();
    },
  });
  // An upgrade refused with an HTTP answer (401 from the auth hook, 404, 429, …) never reaches a
  // handler, and the plugin ends only sockets whose route it handled; end it here, or it lingers
  // (and holds up the server's close).
  app.addHook("onResponse", async (request) => {
    if (String(request.headers.upgrade).toLowerCase() === "websocket") request.raw.socket?.destroy();
  });
}
