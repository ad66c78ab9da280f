/**
 * Writes the audit log (libs/tenancy AuditLog): admin actions explicitly (routes/admin.ts), and
 * every successful change made with an org API key (`key.use`: method and route, with the ids from
 * the URL) through an `onResponse` hook. Reads are not logged. An audit failure is logged and never
 * fails the request.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { GatewayServices } from "../services.ts";

/** Who did it: `operator`, `key:<keyId>`, or `open` (open mode). */
export function actorOf(request: FastifyRequest): string {
  if (request.routeOptions.config?.auth === "operator") return "operator";
  return request.auth?.keyId ? `key:${request.auth.keyId}` : "open";
}

/** Appends one entry to `org`'s audit log. */
export async function audit(
  s: GatewayServices,
  request: FastifyRequest,
  org: string,
  action: string,
  target?: string,
): Promise<void> {
  await s.tenancy.audit
    .append(org, { actor: actorOf(request), action, ...(target ? { target } : {}), ip: request.ip })
    .catch((err: unknown) => request.log.warn({ err }, "audit append failed"));
}

const READS = new Set(["GET", "HEAD", "OPTIONS"]);

/** Logs `key.use` for each successful non-read request made with an API key (not the admin API). */
export function installKeyUseAudit(app: FastifyInstance): void {
  const s = app.services;
  app.addHook("onResponse", async (request, reply) => {
    const keyId = request.auth?.keyId;
    if (!keyId || READS.has(request.method) || reply.statusCode >= 400) return;
    const url = request.routeOptions.url ?? "";
    if (url.startsWith("/v1/keys")) return; // audited by the route itself
    const params = request.params as Record<string, string> | undefined;
    const target = params && Object.keys(params).length > 0 ? JSON.stringify(params) : undefined;
    await audit(s, request, request.auth.org, `key.use ${request.method} ${url}`, target);
  });
}
