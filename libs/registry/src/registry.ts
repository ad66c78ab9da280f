/**
 * CRUD over the registry hashes in Redis: projects, sessions, custom providers and the model
 * catalog. Callers pass validated ids (route schemas check them); this module never builds paths.
 */
import type { ThinkingLevel } from "@pi-fleet/contracts";
import type { Keys, Redis } from "@pi-fleet/redis";
import type {
  CatalogDocument,
  CustomProviderConfig,
  ModelRow,
  ProjectRecord,
  SessionRecord,
} from "./types.ts";

/** Registry access for one key space. */
export class Registry {
  readonly redis: Redis;
  readonly keys: Keys;

  constructor(redis: Redis, keys: Keys) {
    this.redis = redis;
    this.keys = keys;
  }

  /** Creates the project, or returns the existing one (`created: false`); `deployment` updates. */
  async upsertProject(
    org: string,
    id: string,
    name: string,
    deployment?: unknown,
  ): Promise<{ project: ProjectRecord; created: boolean }> {
    const key = this.keys.project(org, id);
    const now = new Date();
    const created = (await this.redis.hsetnx(key, "createdAt", now.toISOString())) === 1;
    if (created) {
      await this.redis
        .multi()
        .hset(key, "id", id, "name", name)
        .zadd(this.keys.projects(org), now.getTime(), id)
        .exec();
    }
    if (deployment !== undefined) await this.redis.hset(key, "deployment", JSON.stringify(deployment));
    const project = await this.getProject(org, id);
    if (!project) throw new Error("project vanished during upsert");
    return { project, created };
  }

  /** Reads a project; undefined when unknown. */
  async getProject(org: string, id: string): Promise<ProjectRecord | undefined> {
    const h = await this.redis.hgetall(this.keys.project(org, id));
    if (!h.id || !h.createdAt) return undefined;
    return {
      id: h.id,
      name: h.name ?? h.id,
      createdAt: h.createdAt,
      ...(h.deployment ? { deployment: JSON.parse(h.deployment) as unknown } : {}),
    };
  }

  /** Projects of an org, newest first. */
  async listProjects(org: string): Promise<ProjectRecord[]> {
    const ids = await this.redis.zrevrange(this.keys.projects(org), "0", "-1");
    const rows = await Promise.all(ids.map((id) => this.getProject(org, id)));
    return rows.filter((p): p is ProjectRecord => p !== undefined);
  }

  /** Removes the project record and its session index; returns the session ids it had. */
  async deleteProject(org: string, id: string): Promise<string[]> {
    const sessions = await this.redis.zrange(this.keys.sessions(org, id), "0", "-1");
    await this.redis
      .multi()
      .del(this.keys.project(org, id), this.keys.sessions(org, id))
      .zrem(this.keys.projects(org), id)
      .exec();
    return sessions;
  }

  /** Creates a session record. */
  async createSession(
    org: string,
    projectId: string,
    id: string,
    opts: { name?: string; provider?: string; modelId?: string; thinkingLevel?: ThinkingLevel },
  ): Promise<SessionRecord> {
    const now = new Date();
    const fields: string[] = ["id", id, "projectId", projectId, "createdAt", now.toISOString()];
    for (const [k, v] of Object.entries(opts)) if (v !== undefined) fields.push(k, String(v));
    await this.redis
      .multi()
      .hset(this.keys.session(org, projectId, id), ...fields)
      .zadd(this.keys.sessions(org, projectId), now.getTime(), id)
      .exec();
    const session = await this.getSession(org, projectId, id);
    if (!session) throw new Error("session vanished during create");
    return session;
  }

  /** Reads a session; undefined when unknown (or when it belongs to another project). */
  async getSession(org: string, projectId: string, id: string): Promise<SessionRecord | undefined> {
    const h = await this.redis.hgetall(this.keys.session(org, projectId, id));
    if (!h.id || !h.createdAt) return undefined;
    return {
      id: h.id,
      projectId,
      createdAt: h.createdAt,
      firstMessage: h.firstMessage ?? "",
      ...(h.name ? { name: h.name } : {}),
      ...(h.provider ? { provider: h.provider } : {}),
      ...(h.modelId ? { modelId: h.modelId } : {}),
      ...(h.thinkingLevel ? { thinkingLevel: h.thinkingLevel as ThinkingLevel } : {}),
      ...(h.activeRun ? { activeRun: h.activeRun } : {}),
    };
  }

  /** Sessions of a project, newest first, with their persisted message counts. */
  async listSessions(org: string, projectId: string): Promise<(SessionRecord & { messageCount: number })[]> {
    const ids = await this.redis.zrevrange(this.keys.sessions(org, projectId), "0", "-1");
    const rows = await Promise.all(
      ids.map(async (id) => {
        const [s, count] = await Promise.all([
          this.getSession(org, projectId, id),
          this.redis.llen(this.keys.messages(org, projectId, id)),
        ]);
        return s ? { ...s, messageCount: count } : undefined;
      }),
    );
    return rows.filter((r): r is SessionRecord & { messageCount: number } => r !== undefined);
  }

  /** Updates a session's model settings. */
  async updateSessionSettings(
    org: string,
    projectId: string,
    id: string,
    settings: { provider?: string; modelId?: string; thinkingLevel?: ThinkingLevel },
  ): Promise<void> {
    const fields: string[] = [];
    for (const [k, v] of Object.entries(settings)) if (v !== undefined) fields.push(k, String(v));
    if (fields.length > 0) await this.redis.hset(this.keys.session(org, projectId, id), ...fields);
  }

  /** Removes a session record from the registry. */
  async deleteSession(org: string, projectId: string, id: string): Promise<void> {
    await this.redis
      .multi()
      .del(this.keys.session(org, projectId, id))
      .zrem(this.keys.sessions(org, projectId), id)
      .exec();
  }

  /** A session's persisted messages (pi `AgentMessage` objects), oldest first. */
  async sessionMessages(org: string, projectId: string, id: string): Promise<unknown[]> {
    const rows = await this.redis.lrange(this.keys.messages(org, projectId, id), "0", "-1");
    return rows.map((r) => JSON.parse(r) as unknown);
  }

  /** Pending extension UI requests of a session (wire `extension_ui_request` objects), oldest first. */
  async pendingUiRequests(org: string, projectId: string, id: string): Promise<unknown[]> {
    const all = await this.redis.hgetall(this.keys.pendingUi(org, projectId, id));
    return Object.values(all)
      .map((json) => JSON.parse(json) as { receivedAt?: number })
      .sort((a, b) => (a.receivedAt ?? 0) - (b.receivedAt ?? 0));
  }

  /** Stores (creates or replaces) a custom provider; `apiKey` undefined keeps the stored key. */
  async putProvider(org: string, config: CustomProviderConfig, apiKey?: string): Promise<void> {
    const tx = this.redis.multi().hset(this.keys.providers(org), config.provider, JSON.stringify(config));
    if (apiKey !== undefined) tx.hset(this.keys.providerKeys(org), config.provider, apiKey);
    await tx.incr(this.keys.providersRevision(org)).exec();
  }

  /** Custom providers of an org with whether a key is stored (never the key). */
  async listProviders(org: string): Promise<{ config: CustomProviderConfig; apiKeyConfigured: boolean }[]> {
    const [all, keyed] = await Promise.all([
      this.redis.hgetall(this.keys.providers(org)),
      this.redis.hkeys(this.keys.providerKeys(org)),
    ]);
    return Object.values(all)
      .map((json) => JSON.parse(json) as CustomProviderConfig)
      .sort((a, b) => a.provider.localeCompare(b.provider))
      .map((config) => ({ config, apiKeyConfigured: keyed.includes(config.provider) }));
  }

  /** Removes a custom provider and its key; returns whether it existed. */
  async deleteProvider(org: string, provider: string): Promise<boolean> {
    const res = await this.redis
      .multi()
      .hdel(this.keys.providers(org), provider)
      .hdel(this.keys.providerKeys(org), provider)
      .incr(this.keys.providersRevision(org))
      .exec();
    return Number(res?.[0]?.[1] ?? 0) > 0;
  }

  /**
   * Everything a worker needs to build an org's pi runtime: custom providers with their keys and
   * the revision (changes on every provider write). Worker-only: this returns secrets.
   */
  async providerRuntimeSpec(
    org: string,
  ): Promise<{ revision: string; providers: (CustomProviderConfig & { apiKey?: string })[] }> {
    const [all, keys, revision] = await Promise.all([
      this.redis.hgetall(this.keys.providers(org)),
      this.redis.hgetall(this.keys.providerKeys(org)),
      this.redis.get(this.keys.providersRevision(org)),
    ]);
    const providers = Object.values(all)
      .map((json) => JSON.parse(json) as CustomProviderConfig)
      .sort((a, b) => a.provider.localeCompare(b.provider))
      .map((p) => (keys[p.provider] ? { ...p, apiKey: keys[p.provider] } : p));
    return { revision: revision ?? "0", providers };
  }

  /** Publishes the built-in model catalog (workers, at boot). */
  async publishCatalog(doc: CatalogDocument): Promise<void> {
    await this.redis.set(this.keys.catalog, JSON.stringify(doc));
  }

  /** The published catalog, or an empty one when no worker has published yet. */
  async catalog(): Promise<CatalogDocument> {
    const raw = await this.redis.get(this.keys.catalog);
    if (!raw) return { models: [], envProviders: [], publishedAt: "" };
    return JSON.parse(raw) as CatalogDocument;
  }

  /**
   * The models an org can see: custom providers' models first (available), then the built-in
   * catalog with availability (only the `default` org gets the workers' env keys).
   */
  async listModels(org: string): Promise<ModelRow[]> {
    const [providers, catalog] = await Promise.all([this.listProviders(org), this.catalog()]);
    const custom = providers.flatMap(({ config }) => config.models.map((m) => customModelRow(config, m)));
    const env = org === "default" ? new Set(catalog.envProviders) : new Set<string>();
    const builtin = catalog.models.map((m) => ({ ...m, available: env.has(m.provider) }));
    return [...custom, ...builtin];
  }
}

/** A custom provider model as a client-facing row (defaults as pi applies them). */
export function customModelRow(p: CustomProviderConfig, m: CustomProviderConfig["models"][number]): ModelRow {
  return {
    provider: p.provider,
    id: m.id,
    name: m.name ?? m.id,
    api: m.api ?? p.api,
    reasoning: m.reasoning ?? false,
    available: true,
    input: m.input ?? ["text"],
    contextWindow: m.contextWindow ?? 128_000,
    maxTokens: m.maxTokens ?? 16_384,
  };
}

/**
 * The model a session uses when it names none: the first available model (custom providers
 * first). Shared by the gateway (to report settings) and the worker (to open the session).
 */
export function defaultModel(models: readonly ModelRow[]): ModelRow | undefined {
  return models.find((m) => m.available);
}
