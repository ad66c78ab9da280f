/**
 * Provider credentials per org (seed `AuthProviderRow`, `ListAuthProvidersResponse`,
 * `SetProviderApiKeyRequest`, `OAuthFlowState`, `ContinueOAuthFlowRequest`). Responses say whether
 * a key exists and where it comes from, never the key.
 */
import { Type } from "typebox";

/** Longest accepted provider API key (characters). */
export const PROVIDER_KEY_MAX_CHARS = 4096;

/** One built-in provider's auth status for the org (seed `AuthProviderRow`). */
export const AuthProviderRow = Type.Object({
  provider: Type.String({ description: "Built-in pi provider id." }),
  name: Type.String({ description: "Display name." }),
  configured: Type.Boolean({ description: "Whether runs of this org can authenticate to the provider." }),
  credentialType: Type.Optional(Type.Literal("api_key")),
  source: Type.Optional(
    Type.Union([Type.Literal("stored"), Type.Literal("environment")], {
      description:
        "`stored`: a key set with `PUT …/api-key` (encrypted at rest); `environment`: the workers' env key (default org only). Stored keys take precedence.",
    }),
  ),
  label: Type.Optional(Type.String()),
  supportsApiKey: Type.Boolean(),
  supportsSubscription: Type.Boolean({ description: "Always false: subscription login is not supported." }),
  modelCount: Type.Integer({ minimum: 0 }),
  availableModelCount: Type.Integer({ minimum: 0 }),
});

export const ListAuthProvidersResponse = Type.Object({ providers: Type.Array(AuthProviderRow) });

/** Seed `SetProviderApiKeyRequest`; the key is trimmed, must not start with `!` or contain `$`. */
export const SetProviderApiKeyRequest = Type.Object(
  {
    key: Type.String({
      minLength: 1,
      maxLength: PROVIDER_KEY_MAX_CHARS,
      description:
        "The API key. Stored encrypted, never returned. Surrounding whitespace is trimmed; keys starting with `!` or containing `$`, whitespace or control characters are refused.",
    }),
  },
  { additionalProperties: false },
);

/** `POST …/subscription/start` takes no body (seed); an empty object is accepted too. */
export const StartOAuthFlowRequest = Type.Object({}, { additionalProperties: false });

/** Seed `OAuthFlowState`. */
export const OAuthFlowState = Type.Object({
  id: Type.String(),
  provider: Type.String(),
  providerName: Type.String(),
  status: Type.Union(
    ["starting", "prompt", "auth", "waiting", "complete", "error", "cancelled"].map((s) => Type.Literal(s)),
  ),
  authUrl: Type.Optional(Type.String()),
  instructions: Type.Optional(Type.String()),
  prompt: Type.Optional(
    Type.Object({
      message: Type.String(),
      placeholder: Type.Optional(Type.String()),
      allowEmpty: Type.Optional(Type.Boolean()),
      options: Type.Optional(
        Type.Array(Type.Object({ id: Type.String(), label: Type.String() }), {
          description:
            "When present, the flow expects `continue` to be called with one of these option ids as the value.",
        }),
      ),
    }),
  ),
  progress: Type.Array(Type.String()),
  error: Type.Optional(Type.String()),
  expiresAt: Type.String(),
});

/** Seed `ContinueOAuthFlowRequest`. */
export const ContinueOAuthFlowRequest = Type.Object(
  { value: Type.String({ maxLength: 8192 }) },
  { additionalProperties: false },
);

export const OAuthFlowParams = Type.Object(
  { flowId: Type.String({ minLength: 1, maxLength: 256 }) },
  { additionalProperties: false },
);
