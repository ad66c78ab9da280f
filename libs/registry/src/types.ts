/**
 * Registry records: what pi-fleet knows about orgs' projects, sessions and providers. Shapes
 * follow the seed contract (`ProjectInfo`, `SessionRow`, `CustomProviderRow`, `AgentModelRow`).
 */
import type { ProviderApi, ThinkingLevel } from "@pi-fleet/contracts";

/** A project (seed `ProjectInfo`). `projectDir` is filled in by the API layer. */
export interface ProjectRecord {
  id: string;
  name: string;
  createdAt: string;
  deployment?: unknown;
}

/** A session's registry entry. Model fields are the session's chosen settings, if any. */
export interface SessionRecord {
  id: string;
  projectId: string;
  createdAt: string;
  name?: string;
  provider?: string;
  modelId?: string;
  thinkingLevel?: ThinkingLevel;
  firstMessage: string;
  /** Id of the run currently executing, if any. */
  activeRun?: string;
}

/** One model of a custom provider (seed `CustomProviderModel`). */
export interface CustomModelConfig {
  id: string;
  name?: string;
  api?: ProviderApi;
  reasoning?: boolean;
  thinkingLevelMap?: Record<string, string | null>;
  input?: ("text" | "image")[];
  contextWindow?: number;
  maxTokens?: number;
  compat?: Record<string, unknown>;
}

/** A custom provider without its key (seed `UpsertCustomProviderRequest` minus `apiKey`). */
export interface CustomProviderConfig {
  provider: string;
  name?: string;
  baseUrl: string;
  api: ProviderApi;
  models: CustomModelConfig[];
}

/** A model as listed to clients (seed `AgentModelRow`). */
export interface ModelRow {
  provider: string;
  id: string;
  name: string;
  api: string;
  reasoning: boolean;
  available: boolean;
  input: ("text" | "image")[];
  contextWindow: number;
  maxTokens: number;
  defaultThinkingLevel?: ThinkingLevel;
}

/** The built-in catalog document workers publish (the gateway never loads pi). */
export interface CatalogDocument {
  models: ModelRow[];
  /** Built-in providers that have a key from the workers' environment (default org only). */
  envProviders: string[];
  /**
   * Operator presets every org gets (the LiteLLM preset), without keys; an org's own custom
   * provider with the same id replaces one (see presets.ts). Absent in documents of older workers.
   */
  presetProviders?: CustomProviderConfig[];
  publishedAt: string;
}

/**
 * Seals a secret before it is stored (structurally `SecretSealer` of `@pi-fleet/security`; the
 * registry never sees key material). The gateway's registry only has this half.
 */
export interface SecretSealer {
  /** False when secrets are stored under the `plain:` marker (open mode without a key). */
  readonly encrypted: boolean;
  seal(plaintext: string, context: string): string;
}

/** Opens sealed secrets (structurally `SecretBox` of `@pi-fleet/security`); workers only. */
export interface SecretOpener {
  open(stored: string, context: string, opts?: { allowLegacyPlaintext?: boolean }): string;
}

/** A stored built-in provider credential as the API may show it: never the secret itself. */
export interface ProviderCredentialStatus {
  provider: string;
  type: "api_key";
  updatedAt: string;
}

/** Everything a worker needs to build an org's pi runtime. Worker-only: it holds opened secrets. */
export interface ProviderRuntimeSpec {
  /** The org's provider revision counter (bumped on every provider or credential write). */
  revision: string;
  /** Digest of the stored (sealed) keys and credentials: changes whenever any of them changes. */
  credentialDigest: string;
  /** Custom providers with their opened keys. */
  providers: (CustomProviderConfig & { apiKey?: string })[];
  /** Opened API keys of built-in providers stored for the org, by provider id. */
  builtinKeys: Record<string, string>;
}
