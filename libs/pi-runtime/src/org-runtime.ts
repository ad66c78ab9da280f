// Builds one org's isolated pi ModelRuntime: in-memory credentials, no models.json, no network,
// the org's custom providers registered without keys in config (H7) and keys set as literal
// runtime keys. Keeps the pi runtime behind a WeakMap so pi's types stay out of the public API.
import type { Provider } from "@earendil-works/pi-ai";
import { ModelRuntime } from "@earendil-works/pi-coding-agent";
import { errorMessage, PiRuntimeError } from "./errors.ts";
import { isolatedRuntimeOptions, toModelRow } from "./model-rows.ts";
import { toProviderConfig } from "./provider-config.ts";
import type { ModelRow, OrgRuntime, OrgRuntimeSpec } from "./types.ts";

/**
 * Runtime key set for custom providers configured without a key (local LLM servers). pi's auth
 * preflight refuses a provider without a credential ("No API key found"), and an empty string
 * counts as none; with this placeholder the server receives `Authorization: Bearer none`, which
 * keyless servers ignore.
 */
export const KEYLESS_PLACEHOLDER_KEY = "none";

interface Internals {
  readonly rt: ModelRuntime;
  /** Provider ids listed before the built-in catalog, in registration order. */
  readonly customIds: string[];
  refresh(): Promise<void>;
}

const internals = new WeakMap<OrgRuntime, Internals>();

const modelKey = (provider: string, modelId: string): string => `${provider}\u0000${modelId}`;

class IsolatedOrgRuntime implements OrgRuntime {
  readonly orgId: string;
  readonly revision: string;
  #rows: readonly ModelRow[] = [];
  #byKey = new Map<string, ModelRow>();

  constructor(orgId: string, revision: string, rt: ModelRuntime, customIds: string[]) {
    this.orgId = orgId;
    this.revision = revision;
    internals.set(this, { rt, customIds, refresh: () => this.#refresh(rt, customIds) });
  }

  listModels(): ModelRow[] {
    return [...this.#rows];
  }

  findModel(provider: string, modelId: string): ModelRow | undefined {
    return this.#byKey.get(modelKey(provider, modelId));
  }

  /**
   * Recomputes the rows and their availability (pi's auth check, no network). Asked per provider:
   * pi's all-provider getAvailable() keeps a stale list after registerNativeProvider.
   */
  async #refresh(rt: ModelRuntime, customIds: readonly string[]): Promise<void> {
    const perProvider = await Promise.all(rt.getProviders().map((p) => rt.getAvailable(p.id)));
    const available = new Set(perProvider.flat().map((m) => modelKey(m.provider, m.id)));
    const custom = new Set(customIds);
    const ordered = [
      ...customIds.flatMap((id) => rt.getModels(id)),
      ...rt.getModels().filter((m) => !custom.has(m.provider)),
    ];
    const rows = ordered.map((m) => toModelRow(m, available.has(modelKey(m.provider, m.id))));
    this.#rows = Object.freeze(rows);
    this.#byKey = new Map(rows.map((r) => [modelKey(r.provider, r.id), r]));
  }
}

/**
 * Builds the isolated runtime of one org (8–13 ms measured, mostly setRuntimeApiKey and the
 * availability pass; cache it). Throws PiRuntimeError
 * "invalid_provider" when a custom provider is refused (see toProviderConfig), when two custom
 * providers share an id, or when `builtinKeys` names a provider pi does not have.
 * Built-in providers still fall back to the process env keys (hazard H6: pi has no switch for
 * it); the worker deletes provider env vars (ANTHROPIC_API_KEY, OPENAI_API_KEY, …) at boot.
 */
export async function buildOrgRuntime(spec: OrgRuntimeSpec): Promise<OrgRuntime> {
  const rt = await ModelRuntime.create(isolatedRuntimeOptions());
  const builtinIds = new Set(rt.getProviders().map((p) => p.id));
  const configs = spec.providers.map((p) => ({ spec: p, config: toProviderConfig(p, builtinIds) }));
  const customIds: string[] = [];
  const keys: [provider: string, key: string][] = [];
  for (const { spec: p, config } of configs) {
    if (customIds.includes(p.provider)) {
      throw new PiRuntimeError(
        "invalid_provider",
        `Custom provider ${JSON.stringify(p.provider)} is defined twice`,
      );
    }
    try {
      rt.registerProvider(p.provider, config);
    } catch (err) {
      throw new PiRuntimeError(
        "invalid_provider",
        `Custom provider ${JSON.stringify(p.provider)} refused by pi: ${errorMessage(err)}`,
        { cause: err },
      );
    }
    keys.push([p.provider, p.apiKey || KEYLESS_PLACEHOLDER_KEY]);
    customIds.push(p.provider);
  }
  for (const [provider, key] of Object.entries(spec.builtinKeys)) {
    if (!key) continue;
    if (!builtinIds.has(provider)) {
      throw new PiRuntimeError(
        "invalid_provider",
        `builtinKeys names an unknown provider ${JSON.stringify(provider)}`,
      );
    }
    keys.push([provider, key]);
  }
  // Literal keys, never persisted; each provider has its own credential queue in pi.
  await Promise.all(keys.map(([provider, key]) => rt.setRuntimeApiKey(provider, key)));
  const org = new IsolatedOrgRuntime(spec.orgId, spec.revision, rt, customIds);
  await internalsOf(org).refresh();
  return org;
}

/** The pi runtime behind an OrgRuntime built by this package. Throws TypeError for foreign objects. */
export function piModelRuntime(runtime: OrgRuntime): ModelRuntime {
  return internalsOf(runtime).rt;
}

/**
 * TEST-ONLY seam: registers a native pi-ai provider (for example `fauxProvider().provider`) on the
 * org runtime, lists its models first, and recomputes availability. Never call it in production
 * code: native providers bypass the validation of toProviderConfig.
 */
export async function registerNativeProviderForTests(runtime: OrgRuntime, provider: Provider): Promise<void> {
  const inner = internalsOf(runtime);
  inner.rt.registerNativeProvider(provider);
  if (!inner.customIds.includes(provider.id)) inner.customIds.unshift(provider.id);
  await inner.refresh();
}

function internalsOf(runtime: OrgRuntime): Internals {
  const inner = internals.get(runtime);
  if (!inner) throw new TypeError("OrgRuntime was not built by @pi-fleet/pi-runtime");
  return inner;
}
