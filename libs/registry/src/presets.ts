/**
 * Operator presets: custom providers configured by the operator (today only the LiteLLM preset,
 * `LITELLM_*`) that every org gets on top of its own. Workers publish them, without keys, in the
 * catalog document so the gateway can list their models without loading pi or holding the key.
 * An org's own custom provider with the same id replaces the preset for that org entirely (URL,
 * models and key): the operator's key is never sent to an org-chosen URL.
 */
import type { ProviderApi } from "@pi-fleet/contracts";
import type { CustomProviderConfig } from "./types.ts";

/**
 * Per-model values of preset models, which name only ids: pi's defaults for a custom model
 * (context window 128,000 tokens, 16,384 output tokens), text input, no reasoning (LiteLLM's
 * OpenAI-compatible API gives no per-model capability pi could use without a network call).
 */
export const PRESET_MODEL_DEFAULTS = {
  contextWindow: 128_000,
  maxTokens: 16_384,
  reasoning: false,
  input: ["text"] as ("text" | "image")[],
} as const;

/** What an operator preset is made of (shape of `LitellmSettings` of @pi-fleet/config plus an id). */
export interface PresetSettings {
  /** Provider id, e.g. `litellm`. */
  provider: string;
  /** Display name. */
  name: string;
  baseUrl: string;
  api: ProviderApi;
  /** Model ids in listing order (the preset's default model first). */
  models: readonly string[];
}

/** The custom-provider config of a preset (no key), each model with {@link PRESET_MODEL_DEFAULTS}. */
export function presetProviderConfig(preset: PresetSettings): CustomProviderConfig {
  return {
    provider: preset.provider,
    name: preset.name,
    baseUrl: preset.baseUrl,
    api: preset.api,
    models: preset.models.map((id) => ({
      id,
      name: id,
      reasoning: PRESET_MODEL_DEFAULTS.reasoning,
      input: [...PRESET_MODEL_DEFAULTS.input],
      contextWindow: PRESET_MODEL_DEFAULTS.contextWindow,
      maxTokens: PRESET_MODEL_DEFAULTS.maxTokens,
    })),
  };
}

/**
 * An org's providers followed by the presets it does not shadow (an own provider with a preset's
 * id replaces that preset). Order matters: the default model is the first available one, so an
 * org's own providers come before the presets, and the presets before pi's built-in catalog.
 */
export function withPresets<T extends { provider: string }>(own: readonly T[], presets: readonly T[]): T[] {
  const ids = new Set(own.map((p) => p.provider));
  return [...own, ...presets.filter((p) => !ids.has(p.provider))];
}
