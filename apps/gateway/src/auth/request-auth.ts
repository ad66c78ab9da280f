/**
 * Who a request acts for. Every `/v1` route reads the org from `request.auth` (set by the auth
 * hook before validation); URLs never name the org (API.md "Tenancy and auth").
 */
import type { ApiKeyRole } from "@pi-fleet/contracts";
import type { FastifyRequest } from "fastify";

/** The authenticated principal of one request. */
export interface RequestAuth {
  /** Org slug every registry, stream and queue key of the request is scoped to. */
  readonly org: string;
  /** What the credential may do: viewers read, members run prompts, admins manage the org. */
  readonly role: ApiKeyRole;
  /** Id of the API key used (absent in open mode). */
  readonly keyId?: string;
}

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the auth hook on every request that reaches a `/v1` route handler. */
    auth: RequestAuth;
  }
}

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== "string") return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1] : undefined;
}
