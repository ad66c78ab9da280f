/** Custom provider and model bodies (seed `UpsertCustomProviderRequest`, `CustomProviderRow`, `AgentModelRow`). */
import { Type } from "typebox";
import { PROVIDER_APIS } from "../thinking.ts";
import { ProviderId, StringEnum, ThinkingLevelSchema } from "./common.ts";

const Api = StringEnum(PROVIDER_APIS);
const InputKind = StringEnum(["text", "image"]);

export const CustomProviderModel = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 200 }),
    name: Type.Optional(Type.String({ maxLength: 200 })),
    api: Type.Optional(Api),
    reasoning: Type.Optional(Type.Boolean()),
    thinkingLevelMap: Type.Optional(
      Type.Record(Type.String({ maxLength: 32 }), Type.Union([Type.String({ maxLength: 100 }), Type.Null()])),
    ),
    input: Type.Optional(Type.Array(InputKind, { maxItems: 2 })),
    contextWindow: Type.Optional(Type.Integer({ exclusiveMinimum: 0, maximum: 100_000_000 })),
    maxTokens: Type.Optional(Type.Integer({ exclusiveMinimum: 0, maximum: 100_000_000 })),
    compat: Type.Optional(Type.Record(Type.String({ maxLength: 64 }), Type.Unknown())),
  },
  { additionalProperties: false },
);

export const UpsertCustomProviderRequest = Type.Object(
  {
    provider: ProviderId,
    name: Type.Optional(Type.String({ maxLength: 200 })),
    baseUrl: Type.String({ format: "uri", pattern: "^https?://", maxLength: 2048 }),
    api: Api,
    apiKey: Type.Optional(Type.String({ maxLength: 4096 })),
    models: Type.Array(CustomProviderModel, { minItems: 1, maxItems: 500 }),
  },
  { additionalProperties: false },
);

export const CustomProviderRow = Type.Object({
  provider: Type.String(),
  name: Type.Optional(Type.String()),
  baseUrl: Type.Optional(Type.String()),
  api: Type.Optional(Api),
  apiKeyConfigured: Type.Boolean(),
  modelCount: Type.Integer({ minimum: 0 }),
  models: Type.Array(CustomProviderModel),
});

export const ListCustomProvidersResponse = Type.Object({ providers: Type.Array(CustomProviderRow) });

export const ProviderParams = Type.Object({ provider: ProviderId }, { additionalProperties: false });

export const AgentModelRow = Type.Object({
  provider: Type.String(),
  id: Type.String(),
  name: Type.String(),
  api: Type.String(),
  reasoning: Type.Boolean(),
  available: Type.Boolean(),
  input: Type.Array(InputKind),
  contextWindow: Type.Integer({ minimum: 0 }),
  maxTokens: Type.Integer({ minimum: 0 }),
  defaultThinkingLevel: Type.Optional(ThinkingLevelSchema),
});

export const ListModelsResponse = Type.Object({ models: Type.Array(AgentModelRow) });
