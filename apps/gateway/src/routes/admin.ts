/**
 * The operator API (`/v1/admin/*`, operator token; keyed mode only) and the org-admin API
 * (`/v1/keys`, `/v1/audit`, role `admin`): orgs, API keys and the audit log (API.md "Tenancy and
 * auth"). A key's secret is returned once, by the create call; lists never contain it. Every change
 * is written to the audit log of the org it concerns. Keys are only issued in keyed mode.
 */
import {
  ApiError,
  type ApiKeyRole,
  AuditQuery,
  AuditResponse,
  CreateApiKeyRequest,
  CreateApiKeyResponse,
  CreateOrgRequest,
  ErrorResponse,
  isStreamId,
  KeyParams,
  ListApiKeysResponse,
  ListOrgsResponse,
  OkResponse,
  OrgKeyParams,
  OrgParams,
  OrgResponse,
  PatchOrgRequest,
} from "@pi-fleet/contracts";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { audit } from "../auth/audit.ts";
import { purgeOrg } from "../purge.ts";
import type { GatewayServices } from "../services.ts";

type KeyBody = { role: ApiKeyRole; name?: string; expiresAt?: string };

async function createKey(s: GatewayServices, request: FastifyRequest, org: string, body: KeyBody) {
  // (`!(… > now)` also refuses a date the schema's format check let through but Date cannot parse.)
  if (body.expiresAt !== undefined && !(Date.parse(body.expiresAt) > Date.now())) {
    throw new ApiError("PF_ERR_REQUEST_INVALID", "expiresAt must be in the future");
  }
  const created = await s.tenancy.keys.create(org, body.role, {
    ...(body.name ? { name: body.name } : {}),
    ...(body.expiresAt ? { expiresAt: body.expiresAt } : {}),
  });
  await audit(s, request, org, "key.create", `${created.id} (${created.role})`);
  return created;
}

export async function adminRoutes(app: FastifyInstance): Promise<void> {
  const s = app.services;
  const operator = { auth: "operator" as const };
  const requireOrg = async (orgId: string) => {
    const org = await s.tenancy.orgs.get(orgId);
    if (!org) throw new ApiError("PF_ERR_ORG_NOT_FOUND");
    return org;
  };

  app.post(
    "/v1/admin/orgs",
    {
      config: operator,
      schema: {
        tags: ["admin"],
        summary: "Create an org (operator token).",
        body: CreateOrgRequest,
        response: { 201: OrgResponse, 400: ErrorResponse, 409: ErrorResponse },
      },
    },
    async (request, reply) => {
      const body = request.body as { id: string; name?: string };
      const org = await s.tenancy.orgs.create(body.id, body.name);
      if (!org) throw new ApiError("PF_ERR_ORG_EXISTS");
      await audit(s, request, org.id, "org.create", org.id);
      return reply.status(201).send(org);
    },
  );
  app.get(
    "/v1/admin/orgs",
    {
      config: operator,
      schema: {
        tags: ["admin"],
        summary: "List orgs (operator token).",
        response: { 200: ListOrgsResponse },
      },
    },
    async () => ({ orgs: await s.tenancy.orgs.list() }),
  );
  app.get(
    "/v1/admin/orgs/:orgId",
    {
      config: operator,
      schema: {
        tags: ["admin"],
        summary: "Get an org (operator token).",
        params: OrgParams,
        response: { 200: OrgResponse, 404: ErrorResponse },
      },
    },
    async (request) => requireOrg((request.params as { orgId: string }).orgId),
  );
  app.patch(
    "/v1/admin/orgs/:orgId",
    {
      config: operator,
      schema: {
        tags: ["admin"],
        summary: "Rename, disable or enable an org (a disabled org's keys get 401).",
        params: OrgParams,
        body: PatchOrgRequest,
        response: { 200: OrgResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const { orgId } = request.params as { orgId: string };
      const patch = request.body as { name?: string; disabled?: boolean };
      const org = await s.tenancy.orgs.patch(orgId, patch);
      if (!org) throw new ApiError("PF_ERR_ORG_NOT_FOUND");
      await audit(s, request, orgId, "org.update", JSON.stringify(patch));
      return org;
    },
  );
  app.delete(
    "/v1/admin/orgs/:orgId",
    {
      config: operator,
      schema: {
        tags: ["admin"],
        summary: "Delete an org with its projects, sessions, streams, queues, secrets, keys and files.",
        params: OrgParams,
        response: { 200: OkResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const { orgId } = request.params as { orgId: string };
      await requireOrg(orgId);
      await purgeOrg(s, orgId);
      return { ok: true as const };
    },
  );
  app.post(
    "/v1/admin/orgs/:orgId/keys",
    {
      config: operator,
      schema: {
        tags: ["admin"],
        summary: "Create an API key for an org; the key is in this response only.",
        params: OrgParams,
        body: CreateApiKeyRequest,
        response: { 201: CreateApiKeyResponse, 400: ErrorResponse, 404: ErrorResponse },
      },
    },
    async (request, reply) => {
      const { orgId } = request.params as { orgId: string };
      await requireOrg(orgId);
      return reply.status(201).send(await createKey(s, request, orgId, request.body as KeyBody));
    },
  );
  app.get(
    "/v1/admin/orgs/:orgId/keys",
    {
      config: operator,
      schema: {
        tags: ["admin"],
        summary: "List an org's API keys (never the secrets).",
        params: OrgParams,
        response: { 200: ListApiKeysResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const { orgId } = request.params as { orgId: string };
      await requireOrg(orgId);
      return { keys: await s.tenancy.keys.list(orgId) };
    },
  );
  app.delete(
    "/v1/admin/orgs/:orgId/keys/:keyId",
    {
      config: operator,
      schema: {
        tags: ["admin"],
        summary: "Revoke an API key (refused by every gateway from its next request).",
        params: OrgKeyParams,
        response: { 200: OkResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const { orgId, keyId } = request.params as { orgId: string; keyId: string };
      if (!(await s.tenancy.keys.revoke(orgId, keyId))) throw new ApiError("PF_ERR_KEY_NOT_FOUND");
      await audit(s, request, orgId, "key.revoke", keyId);
      return { ok: true as const };
    },
  );
  app.get(
    "/v1/admin/orgs/:orgId/audit",
    {
      config: operator,
      schema: {
        tags: ["admin"],
        summary: "An org's audit log, newest first (operator token).",
        params: OrgParams,
        querystring: AuditQuery,
        response: { 200: AuditResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const { orgId } = request.params as { orgId: string };
      await requireOrg(orgId);
      return { entries: await s.tenancy.audit.list(orgId, auditPage(request)) };
    },
  );

  // Org admins manage their own org's keys and read its audit log. In open mode nobody is
  // authenticated, so no key is issued (a key minted there would be checked by nobody while the mode lasts, then valid, unreviewed, once the operator switches to keyed mode with a `default` org; 409, not 400: the request is well-formed, the deployment's mode refuses it); listing and revoking
  // stay, so keys issued there before this check can still be found and revoked.
  const orgAdmin = { auth: "admin" as const };
  const openMode = s.env.PI_FLEET_ADMIN_TOKEN === undefined;
  app.get(
    "/v1/keys",
    {
      config: orgAdmin,
      schema: {
        tags: ["admin"],
        summary: "List this org's API keys (role admin; never the secrets).",
        response: { 200: ListApiKeysResponse },
      },
    },
    async (request) => ({ keys: await s.tenancy.keys.list(request.auth.org) }),
  );
  app.post(
    "/v1/keys",
    {
      config: orgAdmin,
      schema: {
        tags: ["admin"],
        summary: "Create an API key for this org (role admin); the key is in this response only.",
        description:
          "Keyed mode only. Open mode (PI_FLEET_ADMIN_TOKEN unset) checks no key, so a key made there would be unchecked until the operator switches to keyed mode and then grant access nobody reviewed: 409 PF_ERR_AUTH_KEYED_MODE_REQUIRED, nothing is created. Listing and revoking keys work in both modes.",
        body: CreateApiKeyRequest,
        response: { 201: CreateApiKeyResponse, 400: ErrorResponse, 409: ErrorResponse },
      },
    },
    async (request, reply) => {
      if (openMode) throw new ApiError("PF_ERR_AUTH_KEYED_MODE_REQUIRED");
      return reply.status(201).send(await createKey(s, request, request.auth.org, request.body as KeyBody));
    },
  );
  app.delete(
    "/v1/keys/:keyId",
    {
      config: orgAdmin,
      schema: {
        tags: ["admin"],
        summary: "Revoke one of this org's API keys (role admin).",
        params: KeyParams,
        response: { 200: OkResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const { keyId } = request.params as { keyId: string };
      if (!(await s.tenancy.keys.revoke(request.auth.org, keyId))) throw new ApiError("PF_ERR_KEY_NOT_FOUND");
      await audit(s, request, request.auth.org, "key.revoke", keyId);
      return { ok: true as const };
    },
  );
  app.get(
    "/v1/audit",
    {
      config: orgAdmin,
      schema: {
        tags: ["admin"],
        summary: "This org's audit log: admin actions and key use, newest first (role admin).",
        querystring: AuditQuery,
        response: { 200: AuditResponse },
      },
    },
    async (request) => {
      return { entries: await s.tenancy.audit.list(request.auth.org, auditPage(request)) };
    },
  );
}

/**
 * The page an audit query asks for (`limit` 1–1000, default 100; `before` an entry id).
 * @throws ApiError 400 when `before` is beyond Redis's 64-bit entry ids (its pattern passed)
 */
function auditPage(request: FastifyRequest): { limit: number; before?: string } {
  const q = request.query as { limit?: string; before?: string };
  if (q.before !== undefined && !isStreamId(q.before)) {
    throw new ApiError(
      "PF_ERR_REQUEST_INVALID",
      "before: not a stream entry id (each part at most 2^64 - 1)",
    );
  }
  return { limit: Number(q.limit ?? 100), ...(q.before ? { before: q.before } : {}) };
}
