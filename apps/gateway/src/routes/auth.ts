/**
 * Per-org credentials of pi's built-in providers (`/v1/auth/*`, seed contract). Keys are sealed by
 * the registry's SecretSealer before they reach Redis (AES-256-GCM when `PI_FLEET_SECRET_KEY` is
 * set; keyed mode without it refuses with 503 PF_ERR_SECRET_KEY_REQUIRED) and only workers open
 * them; the gateway never decrypts, returns, or logs a key. Responses
 * say whether a key exists and where it comes from (`stored` beats the default org's
 * `environment` keys, as in the worker).
 *
 * Subscription (OAuth) login is not offered: pi 0.87's login flows run a callback server on a
 * fixed localhost port inside the process that started them, keep the PKCE state in memory there
 * and need a Redis-backed, refresh-locking credential store in the worker, so a flow could neither
 * be continued by another gateway nor complete in a headless worker. The four seed endpoints
 * answer honestly: `start` 400 `PF_ERR_AUTH_SUBSCRIPTION_UNSUPPORTED`, the flow endpoints 404.
 */
import {
  ApiError,
  ContinueOAuthFlowRequest,
  DEFAULT_ORG,
  ErrorResponse,
  ListAuthProvidersResponse,
  OAuthFlowParams,
  OAuthFlowState,
  OkResponse,
  ProviderParams,
  SetProviderApiKeyRequest,
  StartOAuthFlowRequest,
} from "@pi-fleet/contracts";
import type { CatalogDocument } from "@pi-fleet/registry";
import type { FastifyInstance } from "fastify";

/** Whitespace or control characters: never part of a token, and they would break the HTTP header. */
const BAD_KEY_CHARS = /[\s\p{Cc}]/u;

/**
 * Trims and checks a provider key. pi resolves `!cmd` and `$VAR` in key strings (hazard H7); the
 * fleet passes keys as literals, but refuses them anyway so no code path can ever resolve one.
 * Messages never echo the key. @throws ApiError PF_ERR_PROVIDER_KEY_INVALID
 */
export function checkProviderKey(raw: string): string {
  const key = raw.trim();
  const invalid = (why: string) => new ApiError("PF_ERR_PROVIDER_KEY_INVALID", `invalid API key: ${why}`);
  if (key.length === 0) throw invalid("it is empty");
  if (key.startsWith("!"))
    throw invalid("keys starting with '!' are refused (pi would run them as a command)");
  if (key.includes("$")) throw invalid("keys containing '$' are refused (pi would expand them as variables)");
  if (BAD_KEY_CHARS.test(key)) throw invalid("keys must not contain whitespace or control characters");
  return key;
}

/** Model counts per built-in provider, in catalog order. */
function modelCounts(catalog: CatalogDocument): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of catalog.models) counts.set(m.provider, (counts.get(m.provider) ?? 0) + 1);
  return counts;
}

export async function authRoutes(app: FastifyInstance): Promise<void> {
  const s = app.services;

  const builtinProviders = async () => modelCounts(await s.registry.catalog());

  /** Refuses a provider that is not built in, explaining custom providers and an empty catalog. */
  const unknownProvider = async (
    org: string,
    provider: string,
    known: Map<string, number>,
  ): Promise<ApiError> => {
    const custom = await s.registry.listProviders(org);
    if (custom.some((p) => p.config.provider === provider)) {
      return new ApiError(
        "PF_ERR_PROVIDER_NOT_FOUND",
        `${provider} is a custom provider: set its key with PUT /v1/custom/providers`,
      );
    }
    return new ApiError(
      "PF_ERR_PROVIDER_NOT_FOUND",
      known.size === 0
        ? `unknown provider ${provider} (no worker has published the model catalog yet)`
        : `unknown provider ${provider}`,
    );
  };

  app.get(
    "/v1/auth/providers",
    {
      schema: {
        tags: ["auth"],
        summary: "List the built-in providers and whether this org has a key for each (never the key).",
        response: { 200: ListAuthProvidersResponse },
      },
    },
    async (request) => {
      const [catalog, stored] = await Promise.all([
        s.registry.catalog(),
        s.registry.providerCredentialStatus(request.auth.org),
      ]);
      const counts = modelCounts(catalog);
      const storedSet = new Set(stored.map((c) => c.provider));
      const env = new Set(request.auth.org === DEFAULT_ORG ? catalog.envProviders : []);
      // A credential whose provider left the catalog (pi upgrade) stays listed so it can be removed.
      for (const p of storedSet) if (!counts.has(p)) counts.set(p, 0);
      return {
        providers: [...counts].map(([provider, modelCount]) => {
          const source = storedSet.has(provider) ? "stored" : env.has(provider) ? "environment" : undefined;
          return {
            provider,
            name: provider,
            configured: source !== undefined,
            ...(source ? { credentialType: "api_key" as const, source } : {}),
            supportsApiKey: true,
            supportsSubscription: false,
            modelCount,
            availableModelCount: source ? modelCount : 0,
          };
        }),
      };
    },
  );

  app.put(
    "/v1/auth/providers/:provider/api-key",
    {
      config: { auth: "admin" },
      schema: {
        tags: ["auth"],
        summary: "Store this org's API key for a built-in provider (encrypted at rest, never returned).",
        description:
          "Body `{key}`. In keyed mode without PI_FLEET_SECRET_KEY the gateway cannot store a key: 503 PF_ERR_SECRET_KEY_REQUIRED, nothing is stored.",
        params: ProviderParams,
        body: SetProviderApiKeyRequest,
        response: { 200: OkResponse, 400: ErrorResponse, 503: ErrorResponse },
      },
    },
    async (request) => {
      const { provider } = request.params as { provider: string };
      const key = checkProviderKey((request.body as { key: string }).key);
      const known = await builtinProviders();
      if (!known.has(provider)) throw await unknownProvider(request.auth.org, provider, known);
      // Keyed mode without PI_FLEET_SECRET_KEY: the sealer refuses, answered 503
      // PF_ERR_SECRET_KEY_REQUIRED by the error handler (as for custom providers' keys).
      await s.registry.setProviderCredential(request.auth.org, provider, key);
      return { ok: true as const };
    },
  );

  app.delete(
    "/v1/auth/providers/:provider",
    {
      config: { auth: "admin" },
      schema: {
        tags: ["auth"],
        summary: "Remove this org's stored key for a provider (no-op if none is stored).",
        params: ProviderParams,
        response: { 200: OkResponse, 400: ErrorResponse },
      },
    },
    async (request) => {
      const { provider } = request.params as { provider: string };
      const removed = await s.registry.removeProviderCredential(request.auth.org, provider);
      if (!removed) {
        const known = await builtinProviders();
        if (!known.has(provider)) throw await unknownProvider(request.auth.org, provider, known);
      }
      return { ok: true as const };
    },
  );

  app.post(
    "/v1/auth/providers/:provider/subscription/start",
    {
      schema: {
        tags: ["auth"],
        summary: "Start a subscription (OAuth) login: not supported by this deployment (always 400).",
        params: ProviderParams,
        body: StartOAuthFlowRequest,
        response: { 200: OAuthFlowState, 400: ErrorResponse },
      },
      config: { optionalBody: true, auth: "admin" },
    },
    async () => {
      throw new ApiError("PF_ERR_AUTH_SUBSCRIPTION_UNSUPPORTED");
    },
  );

  const flowNotFound = async (): Promise<never> => {
    throw new ApiError("PF_ERR_AUTH_FLOW_NOT_FOUND");
  };
  app.get(
    "/v1/auth/subscription/:flowId",
    {
      config: { auth: "admin" },
      schema: {
        tags: ["auth"],
        summary: "Subscription login flow state (no flows exist: always 404).",
        params: OAuthFlowParams,
        response: { 200: OAuthFlowState, 404: ErrorResponse },
      },
    },
    flowNotFound,
  );
  app.delete(
    "/v1/auth/subscription/:flowId",
    {
      config: { auth: "admin" },
      schema: {
        tags: ["auth"],
        summary: "Cancel a subscription login flow (no flows exist: always 404).",
        params: OAuthFlowParams,
        response: { 200: OAuthFlowState, 404: ErrorResponse },
      },
    },
    flowNotFound,
  );
  app.post(
    "/v1/auth/subscription/:flowId/continue",
    {
      config: { auth: "admin" },
      schema: {
        tags: ["auth"],
        summary: "Continue a subscription login flow (the body is validated; no flows exist: 404).",
        params: OAuthFlowParams,
        body: ContinueOAuthFlowRequest,
        response: { 200: OAuthFlowState, 400: ErrorResponse, 404: ErrorResponse },
      },
    },
    flowNotFound,
  );
}
