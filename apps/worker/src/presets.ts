/**
 * The operator presets a worker offers every org (today the LiteLLM preset from `LITELLM_*`),
 * with their keys. The key comes from the secrets `takeSecrets` removed from the environment, so
 * it lives only in this process's memory: it reaches pi as a literal runtime key (never in a
 * provider config, hazard H7), and never Redis, a log line, an API response or the agent's bash.
 */
import {
  ConfigError,
  type Env,
  LITELLM_PROVIDER_ID,
  type LitellmSettings,
  parseLitellm,
} from "@pi-fleet/config";
import { type CustomProviderConfig, presetProviderConfig } from "@pi-fleet/registry";

/** A preset provider with its key (absent: keyless proxy). Worker-only: it holds a secret. */
export interface PresetProvider extends CustomProviderConfig {
  apiKey?: string;
}

/**
 * The presets configured by `env`: `[litellm]` when `LITELLM_BASE_URL` is set, else `[]`.
 * @param secrets what `takeSecrets` returned (`LITELLM_API_KEY`, when set)
 * @throws ConfigError when the `LITELLM_*` variables are invalid (loadEnv refuses them already)
 */
export function presetProvidersFrom(env: Env, secrets: Record<string, string>): PresetProvider[] {
  let litellm: LitellmSettings | undefined;
  try {
    litellm = parseLitellm(env);
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${(err as Error).message}`);
  }
  if (!litellm) return [];
  const config = presetProviderConfig({
    provider: LITELLM_PROVIDER_ID,
    name: "LiteLLM",
    baseUrl: litellm.baseUrl,
    api: litellm.api,
    models: litellm.models,
  });
  const apiKey = secrets.LITELLM_API_KEY;
  return [apiKey ? { ...config, apiKey } : config];
}

/** The preset's config as published in the catalog: everything but the key. */
export function publishablePreset(preset: PresetProvider): CustomProviderConfig {
  return {
    provider: preset.provider,
    name: preset.name,
    baseUrl: preset.baseUrl,
    api: preset.api,
    models: preset.models,
  };
}
