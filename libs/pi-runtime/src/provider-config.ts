// Turns a tenant's ProviderSpec into pi's provider registration input, refusing what would be
// unsafe in a shared worker: built-in provider ids (pi would send the built-in's env key to the
// tenant's URL, hazard H6) and non-http URLs. Keys never go into this config (hazard H7: pi
// resolves `!cmd` and `$VAR` in config strings); they are set as literal runtime keys instead.
import type { Api, Model, ModelThinkingLevel, ThinkingLevelMap } from "@earendil-works/pi-ai";
import type { ModelRuntime } from "@earendil-works/pi-coding-agent";
import { PROVIDER_APIS, PROVIDER_ID_PATTERN } from "@pi-fleet/contracts";
import { PiRuntimeError } from "./errors.ts";
import type { ProviderModelSpec, ProviderSpec } from "./types.ts";

const providerIdRe = new RegExp(PROVIDER_ID_PATTERN);
const PI_THINKING_KEYS: readonly ModelThinkingLevel[] = [
  "off",
  "minimal",
  "low",
  "medium",
  "high",
  "xhigh",
  "max",
];
const ZERO_COST = { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 };
/** Local OpenAI-compatible servers (vLLM, llama.cpp, Ollama) rarely know these; specs may override. */
const OPENAI_COMPLETIONS_COMPAT_DEFAULTS = { supportsDeveloperRole: false, supportsStore: false };

/** pi's ProviderConfigInput (not exported by name from the package root). */
export type ProviderConfigInput = Parameters<ModelRuntime["registerProvider"]>[1];
type ModelInput = NonNullable<ProviderConfigInput["models"]>[number];

/**
 * Validates `spec` and returns pi's `registerProvider` input (no apiKey, no headers).
 * Throws PiRuntimeError "invalid_provider" for a bad or built-in id, a bad URL or api, no models,
 * or a model with an empty/duplicate id or a non-positive contextWindow/maxTokens.
 */
export function toProviderConfig(spec: ProviderSpec, builtinIds: ReadonlySet<string>): ProviderConfigInput {
  const id = spec.provider;
  if (!providerIdRe.test(id)) refuse(id, "the id does not match " + PROVIDER_ID_PATTERN);
  if (builtinIds.has(id)) refuse(id, "the id is a built-in pi provider id; choose another id");
  if (!(PROVIDER_APIS as readonly string[]).includes(spec.api)) refuse(id, `unsupported api ${spec.api}`);
  let url: URL;
  try {
    url = new URL(spec.baseUrl);
  } catch {
    refuse(id, "baseUrl is not a URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") refuse(id, "baseUrl must be http(s)");
  if (spec.models.length === 0) refuse(id, "no models");
  const seen = new Set<string>();
  for (const m of spec.models) {
    if (!m.id) refuse(id, "a model has an empty id");
    if (seen.has(m.id)) refuse(id, `duplicate model id ${m.id}`);
    seen.add(m.id);
    for (const [field, value] of [
      ["contextWindow", m.contextWindow],
      ["maxTokens", m.maxTokens],
    ] as const) {
      if (value !== undefined && !(Number.isInteger(value) && value > 0)) {
        refuse(id, `model ${m.id}: ${field} must be a positive integer`);
      }
    }
  }
  return {
    name: spec.name ?? id,
    baseUrl: spec.baseUrl,
    api: spec.api,
    models: spec.models.map((m) => toModelInput(m, spec.api)),
  };
}

function toModelInput(m: ProviderModelSpec, api: Api): ModelInput {
  const compat =
    api === "openai-completions" ? { ...OPENAI_COMPLETIONS_COMPAT_DEFAULTS, ...m.compat } : m.compat;
  return {
    id: m.id,
    name: m.name ?? m.id,
    reasoning: m.reasoning ?? false,
    input: m.input ? [...m.input] : ["text"],
    cost: { ...ZERO_COST },
    contextWindow: m.contextWindow ?? 128_000,
    maxTokens: m.maxTokens ?? 16_384,
    ...(m.thinkingLevelMap ? { thinkingLevelMap: toThinkingLevelMap(m.thinkingLevelMap) } : {}),
    // compat is a per-API union in pi's types; the spec's keys are passed through as-is.
    ...(compat ? { compat: compat as Model<Api>["compat"] } : {}),
  };
}

function toThinkingLevelMap(map: Record<string, string | null>): ThinkingLevelMap {
  const out: ThinkingLevelMap = {};
  for (const key of PI_THINKING_KEYS) {
    const value = map[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}

function refuse(providerId: string, why: string): never {
  throw new PiRuntimeError(
    "invalid_provider",
    `Custom provider ${JSON.stringify(providerId)} refused: ${why}`,
  );
}
