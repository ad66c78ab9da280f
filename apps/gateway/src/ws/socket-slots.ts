/**
 * A socket's slot among its credential's open streams (PI_FLEET_MAX_STREAMS_PER_KEY), taken
 * before the upgrade: a client past the cap gets HTTP 429 with `Retry-After`, as an SSE stream
 * does, instead of a socket that is closed (1008) as soon as it opened. The slot is given back
 * when the connection ends, whether or not the upgrade happened.
 */
import type { FastifyRequest } from "fastify";
import type { GatewayServices } from "../services.ts";

interface Reservation {
  release: () => void;
  /** What a revocation of the credential closes (set once the socket exists). */
  onRevoke: (() => void) | undefined;
}

const reserved = new WeakMap<FastifyRequest, Reservation>();

/**
 * Reserves the slot of an upgrade request (call in the route's `preHandler`, after auth); a
 * request without `Upgrade: websocket` takes none.
 * @throws ApiError 429 PF_ERR_RATE_LIMITED when the credential has no slot left
 */
export function reserveSocketSlot(s: GatewayServices, request: FastifyRequest): void {
  if (String(request.headers.upgrade).toLowerCase() !== "websocket") return;
  const reservation: Reservation = { release: () => {}, onRevoke: undefined };
  reservation.release = s.connections.acquire(request.auth, () => reservation.onRevoke?.());
  reserved.set(request, reservation);
  request.raw.socket.once("close", reservation.release);
}

/**
 * The reserved slot of an upgraded request: `onRevoke` closes the socket if the credential is
 * revoked. @returns the slot's release (idempotent; also runs when the connection closes)
 * @throws Error when the route reserved none (a bug: every socket route reserves in preHandler)
 */
export function takeSocketSlot(request: FastifyRequest, onRevoke: () => void): () => void {
  const reservation = reserved.get(request);
  if (!reservation) throw new Error("socket route without a reserved stream slot");
  reservation.onRevoke = onRevoke;
  return reservation.release;
}
