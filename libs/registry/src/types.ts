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
  publishedAt: string;
}
