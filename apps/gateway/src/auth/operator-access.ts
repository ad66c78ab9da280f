/**
 * Access to the operator's observability pages: `GET /metrics` (outside `/v1`, so the `/v1` auth
 * hook never sees it) and the read-only queue board under `/v1/admin/queues` (its routes are
 * registered by bull-board, marked public for that hook and guarded here instead).
 *
 * - Open mode: allowed — the gateway only listens on loopback (gateway.ts), like every open-mode route.
 * - Keyed mode: the operator token (`PI_FLEET_ADMIN_TOKEN`, compared in constant time), as
 *   `Authorization: Bearer <token>` (Prometheus `authorization.credentials`, curl) or HTTP Basic
 *   with the token as the password (any user name): a browser asks for it once on the 401's
 *   `WWW-Authenticate` challenge and then sends it with every request of the board page, which a
 *   bearer token cannot do. Org API keys never open these pages.
 *
 * The answer is written here (not thrown), so it has the fleet's error shape even inside
 * bull-board's scope, whose error handler has another.
 */
import { ERROR_CODES } from "@pi-fleet/contracts";
import { tokensEqual } from "@pi-fleet/tenancy";
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from "fastify";
import { bearerToken } from "./request-auth.ts";

/** The operator token presented by a request (Bearer, or the password of Basic), if any. */
export function presentedOperatorToken(request: FastifyRequest): string | undefined {
  const bearer = bearerToken(request);
  if (bearer !== undefined) return bearer;
  const header = request.headers.authorization;
  if (typeof header !== "string") return undefined;
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!basic?.[1]) return undefined;
  const decoded = Buffer.from(basic[1], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon >= 0 ? decoded.slice(colon + 1) : undefined;
}

function deny(reply: FastifyReply, code: "PF_ERR_AUTH_REQUIRED" | "PF_ERR_AUTH_INVALID", realm: string) {
  const error = code === "PF_ERR_AUTH_REQUIRED" ? "the operator token is required" : "invalid operator token";
  return reply
    .status(ERROR_CODES[code].status)
    .header("WWW-Authenticate", `Basic realm="${realm}", charset="UTF-8"`)
    .header("cache-control", "no-store")
    .send({ error, code });
}

/**
 * An `onRequest` hook letting only the operator through in keyed mode (anyone in open mode).
 * @param adminToken `PI_FLEET_ADMIN_TOKEN` (undefined = open mode)
 * @param realm the Basic realm named in the challenge
 */
export function operatorOnly(adminToken: string | undefined, realm: string): onRequestAsyncHookHandler {
  return async (request, reply) => {
    if (adminToken === undefined) return;
    const token = presentedOperatorToken(request);
    if (token === undefined) return deny(reply, "PF_ERR_AUTH_REQUIRED", realm);
    if (!tokensEqual(token, adminToken)) return deny(reply, "PF_ERR_AUTH_INVALID", realm);
  };
}
