/**
 * The LiteLLM preset: an operator-run LiteLLM proxy (or any OpenAI/Anthropic-compatible gateway)
 * configured once through `LITELLM_*` and offered to every org as the custom provider `litellm`.
 * This module only validates and shapes the variables; the key (`LITELLM_API_KEY`) is a secret
 * taken out of the environment by `takeSecrets` and handled by the worker alone.
 */
import { PROVIDER_APIS, type ProviderApi } from "@pi-fleet/contracts";

/** Provider id of the preset (an org's own custom provider with this id replaces it for that org). */
export const LITELLM_PROVIDER_ID = "litellm";
/** `LITELLM_API` when unset: LiteLLM's OpenAI-compatible `/chat/completions`. */
export const LITELLM_DEFAULT_API: ProviderApi = "openai-completions";
/** Longest accepted model id (the custom-provider model id limit of the API contract). */
const MAX_MODEL_ID_CHARS = 200;

/** The validated LiteLLM preset settings (never the key). */
export interface LitellmSettings {
  /** http(s) base URL handed to pi's client for `api`, e.g. `http://litellm:4000/v1`. */
  baseUrl: string;
  /** pi API the proxy is spoken to with. */
  api: ProviderApi;
  /** Model ids as LiteLLM names them, the default model first, then the others in listed order. */
  models: string[];
  /** `LITELLM_DEFAULT_MODEL`, or the first of `LITELLM_MODELS` when unset. */
  defaultModel: string;
}

/** The `LITELLM_*` variables as read by `loadEnv` (raw strings, all optional). */
export interface LitellmEnv {
  LITELLM_BASE_URL?: string;
  LITELLM_API_KEY?: string;
  LITELLM_MODELS?: string;
  LITELLM_DEFAULT_MODEL?: string;
  LITELLM_API?: string;
}

/**
 * Validates the `LITELLM_*` variables and returns the preset, or undefined when
 * `LITELLM_BASE_URL` is unset (the preset is off).
 * @throws Error with a one-line reason naming the variable (loadEnv wraps it in ConfigError):
 *   another `LITELLM_*` set without `LITELLM_BASE_URL`; a base URL that is not http(s), not a URL
 *   or carries credentials; an empty, duplicate or malformed model id in `LITELLM_MODELS`; a
 *   `LITELLM_DEFAULT_MODEL` not in `LITELLM_MODELS`; an unknown `LITELLM_API`.
 */
export function parseLitellm(env: LitellmEnv): LitellmSettings | undefined {
  const baseUrl = env.LITELLM_BASE_URL;
  if (baseUrl === undefined) {
    const stray = (
      ["LITELLM_API_KEY", "LITELLM_MODELS", "LITELLM_DEFAULT_MODEL", "LITELLM_API"] as const
    ).filter((name) => env[name] !== undefined);
    if (stray.length > 0) throw new Error(`${stray.join(", ")} set but LITELLM_BASE_URL is not`);
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new Error("LITELLM_BASE_URL must be an http(s) URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error("LITELLM_BASE_URL must be an http(s) URL");
  }
  if (url.username || url.password) {
    throw new Error("LITELLM_BASE_URL must not contain credentials; put the key in LITELLM_API_KEY");
  }
  const api = env.LITELLM_API ?? LITELLM_DEFAULT_API;
  if (!(PROVIDER_APIS as readonly string[]).includes(api)) {
    throw new Error(`LITELLM_API must be one of ${PROVIDER_APIS.join(", ")}`);
  }
  const listed = (env.LITELLM_MODELS ?? "").split(",").map((id) => id.trim());
  if (listed.every((id) => id === "")) {
    throw new Error("LITELLM_MODELS must list at least one model id (comma-separated)");
  }
  const seen = new Set<string>();
  for (const id of listed) {
    if (id === "") throw new Error("LITELLM_MODELS has an empty model id");
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
    if (id.length > MAX_MODEL_ID_CHARS || /[\s\u0000-\u001f\u007f]/.test(id)) {
      throw new Error(`LITELLM_MODELS: invalid model id ${JSON.stringify(id.slice(0, 40))}`);
    }
    if (seen.has(id)) throw new Error(`LITELLM_MODELS lists ${JSON.stringify(id)} twice`);
    seen.add(id);
  }
  const defaultModel = env.LITELLM_DEFAULT_MODEL?.trim() || listed[0]!;
  if (!seen.has(defaultModel)) {
    throw new Error(`LITELLM_DEFAULT_MODEL ${JSON.stringify(defaultModel)} is not in LITELLM_MODELS`);
  }
  return {
    baseUrl,
    api: api as ProviderApi,
    models: [defaultModel, ...listed.filter((id) => id !== defaultModel)],
    defaultModel,
  };
}
