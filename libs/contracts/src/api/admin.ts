/**
 * Tenancy bodies: the operator API under `/v1/admin/*` (orgs, API keys), the org-admin key API
 * under `/v1/keys` and the audit log (API.md "Tenancy and auth"; issue 6).
 */
import { Type } from "typebox";
import { SLUG_PATTERN } from "../ids.ts";
import { StringEnum } from "./common.ts";

/** Roles of an API key: viewers read, members also run prompts, admins also manage the org. */
export const API_KEY_ROLES = ["admin", "member", "viewer"] as const;
/** One of API_KEY_ROLES. */
export type ApiKeyRole = (typeof API_KEY_ROLES)[number];

export const OrgId = Type.String({ pattern: SLUG_PATTERN, description: "Org id (slug)." });
export const ApiKeyId = Type.String({ pattern: "^[a-f0-9]{16}$", description: "API key id." });

export const OrgParams = Type.Object({ orgId: OrgId }, { additionalProperties: false });
export const OrgKeyParams = Type.Object({ orgId: OrgId, keyId: ApiKeyId }, { additionalProperties: false });
export const KeyParams = Type.Object({ keyId: ApiKeyId }, { additionalProperties: false });

export const CreateOrgRequest = Type.Object(
  {
    id: OrgId,
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  },
  { additionalProperties: false },
);

export const PatchOrgRequest = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    disabled: Type.Optional(Type.Boolean({ description: "A disabled org's keys are refused (401)." })),
  },
  { additionalProperties: false },
);

export const OrgResponse = Type.Object({
  id: Type.String(),
  name: Type.String(),
  disabled: Type.Boolean(),
  createdAt: Type.String(),
});

export const ListOrgsResponse = Type.Object({ orgs: Type.Array(OrgResponse) });

export const CreateApiKeyRequest = Type.Object(
  {
    role: StringEnum(API_KEY_ROLES),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    expiresAt: Type.Optional(
      Type.String({ format: "date-time", description: "After this instant the key is refused." }),
    ),
  },
  { additionalProperties: false },
);

/** An API key as listed: never the secret. */
export const ApiKeyRow = Type.Object({
  id: Type.String(),
  org: Type.String(),
  role: StringEnum(API_KEY_ROLES),
  name: Type.Optional(Type.String()),
  createdAt: Type.String(),
  expiresAt: Type.Optional(Type.String()),
  lastUsedAt: Type.Optional(Type.String()),
});

export const CreateApiKeyResponse = Type.Object({
  ...ApiKeyRow.properties,
  key: Type.String({ description: "The secret, shown this once: only its hash is stored." }),
});

export const ListApiKeysResponse = Type.Object({ keys: Type.Array(ApiKeyRow) });

export const AuditQuery = Type.Object(
  {
    limit: Type.Optional(
      Type.String({ pattern: "^(1000|[1-9][0-9]{0,2})$", description: "1 to 1000 entries (default 100)." }),
    ),
    before: Type.Optional(Type.String({ pattern: "^[0-9]+-[0-9]+$", description: "Page older entries." })),
  },
  { additionalProperties: false },
);

export const AuditEntry = Type.Object({
  id: Type.String({ description: "Stream entry id (time-ordered)." }),
  at: Type.String(),
  actor: Type.String({ description: "`operator` or `key:<keyId>` (or `open` in open mode)." }),
  action: Type.String({ description: "What was done, e.g. `org.create`, `key.revoke`, `key.use`." }),
  target: Type.Optional(Type.String()),
  ip: Type.Optional(Type.String()),
});

export const AuditResponse = Type.Object({ entries: Type.Array(AuditEntry) });
