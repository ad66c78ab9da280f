/**
 * Custom providers (OpenAI-compatible endpoints configured at runtime, per org) and the model
 * list. Keys are stored apart from the config, sealed (keyed mode without PI_FLEET_SECRET_KEY
 * refuses a key: 503 PF_ERR_SECRET_KEY_REQUIRED, nothing stored) and never returned or logged;
 * responses only say whether one is configured.
 */
import {
  ApiError,
  CustomProviderRow,
  ErrorResponse,
  ListCustomProvidersResponse,
  ListModelsResponse,
  OkResponse,
  ProviderParams,
  UpsertCustomProviderRequest,
} from "@pi-fleet/contracts";
import type { CustomProviderConfig } from "@pi-fleet/registry";
import type { FastifyInstance, FastifyRequest } from "fastify";

/** Built-in pi provider ids that a custom provider may not shadow (hazard H6 in pi-sdk.md). */
const RESERVED = new Set([
  "anthropic",
  "openai",
  "google",
  "openrouter",
  "xai",
  "groq",
  "mistral",
  "azure",
  "faux",
]);

function row(config: CustomProviderConfig, apiKeyConfigured: boolean) {
  return { ...config, apiKeyConfigured, modelCount: config.models.length };
}

export async function providerRoutes(app: FastifyInstance): Promise<void> {
  const s = app.services;
  app.get(
    "/v1/custom/providers",
    {
      schema: {
        tags: ["models"],
        summary: "List custom providers without secret values.",
        response: { 200: ListCustomProvidersResponse },
      },
    },
    async (request) => ({
      providers: (await s.registry.listProviders(request.auth.org)).map((p) =>
        row(p.config, p.apiKeyConfigured),
      ),
    }),
  );
  app.put(
    "/v1/custom/providers",
    {
      config: { auth: "admin" },
      schema: {
        tags: ["models"],
        summary: "Create or update a custom provider.",
        description:
          "An `apiKey` is sealed before it is stored (never returned). In keyed mode without PI_FLEET_SECRET_KEY the gateway cannot store one: 503 PF_ERR_SECRET_KEY_REQUIRED, nothing is stored.",
        body: UpsertCustomProviderRequest,
        response: { 200: CustomProviderRow, 400: ErrorResponse, 503: ErrorResponse },
      },
    },
    async (request) => {
      const { apiKey, ...config } = request.body as CustomProviderConfig & { apiKey?: string };
      const catalog = await s.registry.catalog();
      if (RESERVED.has(config.provider) || catalog.models.some((m) => m.provider === config.provider)) {
        throw new ApiError("PF_ERR_PROVIDER_RESERVED");
      }
      const ids = new Set<string>();
      for (const m of config.models) {
        if (ids.has(m.id))
          throw new ApiError("PF_ERR_REQUEST_INVALID", `duplicate model id ${JSON.stringify(m.id)}`);
        ids.add(m.id);
      }
      // Seals the key first: without a key in keyed mode it throws before anything is written
      // (SecretBoxError "key_required", answered 503 by the error handler).
      await s.registry.putProvider(request.auth.org, config, apiKey);
      const stored = (await s.registry.listProviders(request.auth.org)).find(
        (p) => p.config.provider === config.provider,
      );
      return row(config, stored?.apiKeyConfigured ?? false);
    },
  );
  app.delete(
    "/v1/custom/providers/:provider",
    {
      config: { auth: "admin" },
      schema: {
        tags: ["models"],
        summary: "Remove a custom provider (no-op if it does not exist).",
        description:
          'Idempotent, as the seed contract declares it (200 "removed if it existed", no 404): deleting a provider that does not exist, or no longer does, answers 200 `{ok: true}`, so a retried or repeated delete succeeds. Unlike projects, sessions and keys, whose DELETE answers 404 for a missing one.',
        params: ProviderParams,
        response: { 200: OkResponse, 400: ErrorResponse },
      },
    },
    async (request) => {
      const { provider } = request.params as { provider: string };
      // No 404 for a missing provider: seed clients delete "if it exists" and expect 200.
      await s.registry.deleteProvider(request.auth.org, provider);
      return { ok: true as const };
    },
  );
  const listModels = async (request: FastifyRequest) => ({
    models: await s.registry.listModels(request.auth.org),
  });
  const modelsSchema = {
    tags: ["models"],
    summary: "Models known to this org (custom providers first), including unavailable ones.",
    response: { 200: ListModelsResponse },
  };
  app.get("/v1/sessions/models", { schema: modelsSchema }, listModels);
  app.get("/v1/models", { schema: modelsSchema }, listModels);
}
