// Converts pi's Model objects into the fleet's plain ModelRow, and serves the built-in catalog
// (for publishing to Redis) from one throwaway, credential-less runtime.
import { type Api, InMemoryCredentialStore, type Model } from "@earendil-works/pi-ai";
import { ModelRuntime } from "@earendil-works/pi-coding-agent";
import { defaultThinkingLevelFor } from "./thinking-levels.ts";
import type { ModelRow } from "./types.ts";

/** A frozen ModelRow for a pi model (`model` from a ModelRuntime's catalog). */
export function toModelRow(model: Model<Api>, available: boolean): ModelRow {
  return Object.freeze({
    provider: model.provider,
    id: model.id,
    name: model.name,
    api: model.api,
    reasoning: model.reasoning,
    available,
    input: [...model.input],
    contextWindow: model.contextWindow,
    maxTokens: model.maxTokens,
    defaultThinkingLevel: defaultThinkingLevelFor(model),
  });
}

/** Options every runtime of this package is created with: no files, no network, no env store. */
export function isolatedRuntimeOptions(): Parameters<typeof ModelRuntime.create>[0] {
  return { credentials: new InMemoryCredentialStore(), modelsPath: null, refreshOnCreate: false };
}

let builtinRows: Promise<ModelRow[]> | undefined;

/**
 * Built-in catalog rows of pi 0.87 (about 1,500 models, in pi's provider order) with
 * `available: false` (no credentials are consulted), for publishing to Redis. Computed once per
 * process; each call returns a fresh array of frozen rows.
 */
export async function listBuiltinModels(): Promise<ModelRow[]> {
  builtinRows ??= ModelRuntime.create(isolatedRuntimeOptions()).then((rt) =>
    rt.getModels().map((m) => toModelRow(m, false)),
  );
  try {
    return [...(await builtinRows)];
  } catch (err) {
    builtinRows = undefined;
    throw err;
  }
}
