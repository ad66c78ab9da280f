/**
 * Authentication and role checks for every `/v1` route (API.md "Tenancy and auth").
 *
 * - Open mode (no `PI_FLEET_ADMIN_TOKEN`): every request acts as an admin of the `default` org;
 *   the gateway only binds loopback (gateway.ts), and `/v1/admin/*` does not exist (404).
 * - Keyed mode: `Authorization: Bearer pfk_…` names an org API key (ApiKeyStore.verify: hash
 *   compared in constant time, expiry, org enabled). Nothing is cached, so a revoked key or a
 *   disabled org is refused by every gateway on its next request. `/v1/admin/*` takes the operator
 *   token instead.
 *
 * A route's required role comes from its `config.auth` (see RouteAuth), else from its method:
 * GET/HEAD need `viewer`, anything else `member`. Health, docs and the OpenAPI document are public.
 */
import { ApiError, type ApiKeyRole, DEFAULT_ORG } from "@pi-fleet/contracts";
import { tokensEqual } from "@pi-fleet/tenancy";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { bearerToken, type RequestAuth } from "./request-auth.ts";

/** What a route requires: a role, the operator token, or nothing. */
export type RouteAuth = ApiKeyRole | "operator" | "public";

declare module "fastify" {
  interface FastifyContextConfig {
    /** Required credential (default: `viewer` for GET/HEAD, `member` otherwise). */
    auth?: RouteAuth;
  }
}

const RANK: Record<ApiKeyRole, number> = { viewer: 0, member: 1, admin: 2 };

/** The principal of open mode. */
export const OPEN_MODE_AUTH: RequestAuth = { org: DEFAULT_ORG, role: "admin" };

/** Whether `role` is at least `needed`. */
export function roleAllows(role: ApiKeyRole, needed: ApiKeyRole): boolean {
  return RANK[role] >= RANK[needed];
}

/** Throws 403 PF_ERR_AUTH_FORBIDDEN unless the request's role is at least `needed`. */
export function requireRole(request: FastifyRequest, needed: ApiKeyRole): void {
  if (!roleAllows(request.auth.role, needed)) {
    throw new ApiError(
      "PF_ERR_AUTH_FORBIDDEN",
      `this needs the ${needed} role (the key is ${request.auth.role})`,
    );
  }
}

/** Installs the `onRequest` hook that sets `request.auth` or answers 401/403/404. */
export function installAuth(app: FastifyInstance): void {
  const s = app.services;
  const adminToken = s.env.PI_FLEET_ADMIN_TOKEN;
  app.decorateRequest("auth", null as unknown as RequestAuth);
  app.addHook("onRequest", async (request) => {
    const url = request.routeOptions.url;
    // Unknown routes fall through to the 404 handler; non-API routes (docs) are public.
    if (url === undefined || !url.startsWith("/v1/")) return;
    const needed: RouteAuth =
      request.routeOptions.config?.auth ??
      (request.method === "GET" || request.method === "HEAD" ? "viewer" : "member");
    if (needed === "public") return;
    if (needed === "operator") {
      if (adminToken === undefined) throw new ApiError("PF_ERR_ROUTE_NOT_FOUND", "no admin API in open mode");
      const token = bearerToken(request);
      if (token === undefined) throw new ApiError("PF_ERR_AUTH_REQUIRED", "the operator token is required");
      if (!tokensEqual(token, adminToken))
        throw new ApiError("PF_ERR_AUTH_INVALID", "invalid operator token");
      request.auth = { org: "", role: "admin" };
      return;
    }
    if (adminToken === undefined) {
      request.auth = OPEN_MODE_AUTH;
    } else {
      const token = bearerToken(request);
      if (token === undefined) throw new ApiError("PF_ERR_AUTH_REQUIRED");
      const principal = await s.tenancy.keys.verify(token);
      if (!principal || !(await s.tenancy.orgs.isActive(principal.org))) {
        throw new ApiError("PF_ERR_AUTH_INVALID");
      }
      request.auth = principal;
    }
    requireRole(request, needed);
  });
}
