/**
 * CRUD over the registry hashes in Redis: projects, sessions, custom providers, built-in provider
 * credentials and the model catalog. Sessions are created and deleted, and projects deleted, by
 * `SessionRecords` (`@pi-fleet/streams`), which writes the records together with their project
 * activity events and stream ends in one script each; this module reads them and updates their
 * settings. Callers pass validated ids (route schemas check them); this
 * module never builds paths. Secrets (provider keys) are sealed with the injected SecretSealer
 * before they reach Redis and opened only by a registry that was given an opener (workers).
 */
import { createHash, createHmac, randomBytes } from "node:crypto";
import type { ThinkingLevel } from "@pi-fleet/contracts";
import { type Keys, LuaScript, type Redis } from "@pi-fleet/redis";
import {
  ADD_PENDING_UI,
  type PendingUiStatus,
  RESOLVE_PENDING_UI,
  UI_TOMBSTONE_PREFIX,
  UI_TOMBSTONE_TTL_MS,
  type UiResolution,
} from "./pending-ui.ts";
import { withPresets } from "./presets.ts";
import type {
  CatalogDocument,
  CustomProviderConfig,
  ModelRow,
  ProjectRecord,
  ProviderCredentialStatus,
  ProviderRuntimeSpec,
  SecretOpener,
  SecretSealer,
  SessionRecord,
} from "./types.ts";

/**
 * KEYS: project hash, the org's project index, the project's deleting marker (Keys.projectDeleting).
 * ARGV: created-at (ISO 8601), project id, name, created-at (epoch ms, the index score).
 * Sets every field that is absent, in one step (a concurrent create never sees half a record);
 * returns 1 when this call created the project, 0 when it existed, -1 (nothing written) while a
 * project of this id is being deleted.
 */
const UPSERT_PROJECT = new LuaScript(
  "upsert-project",
  `if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local created = redis.call('HSETNX', KEYS[1], 'createdAt', ARGV[1])
redis.call('HSETNX', KEYS[1], 'id', ARGV[2])
redis.call('HSETNX', KEYS[1], 'name', ARGV[3])
redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[2])
return created`,
  3,
);

/** A project of this id is being deleted (its files not removed yet): create it again shortly. */
export class ProjectBeingDeletedError extends Error {
  override readonly name = "ProjectBeingDeletedError";
}

/**
 * KEYS: lease, session hash. ARGV: lease token ('' = unfenced: the gateway), then field names and
 * values. Updates an existing session (its record has `createdAt`) only while the token holds the
 * project lease: returns 1, or 0 when fenced or when the session is gone (a deleted session's hash
 * is never recreated, not even with a stray field).
 */
const UPDATE_SESSION_FENCED = new LuaScript(
  "update-session-fenced",
  `if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', KEYS[2], 'createdAt') == 0 then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 2))
return 1`,
  2,
);

/** Stored form of a built-in provider credential (the hash value of `keys.providerCredentials`). */
interface StoredCredential {
  type: "api_key";
  sealed: string;
  updatedAt: string;
}

/** Sealing context of a custom provider's key (bound as AAD: a value cannot move to another slot). */
const customKeyContext = (org: string, provider: string) => `provider-key:${org}:${provider}`;
/** Sealing context of a built-in provider credential. */
const credentialContext = (org: string, provider: string) => `provider-credential:${org}:${provider}`;

/** Registry access for one key space. */
export class Registry {
  readonly redis: Redis;
  readonly keys: Keys;
  readonly #secrets: (SecretSealer & Partial<SecretOpener>) | undefined;
  /**
   * Keys the credential digest. Random per instance: the digest only has to be stable within this
   * process, and `plain:`/legacy values are plaintext, so an unkeyed hash would fingerprint keys.
   */
  readonly #digestSalt = randomBytes(32);
  /** The last catalog read, frozen, with the revision it was read under (see catalog()). */
  #catalogCache: { revision: string; doc: CatalogDocument } | undefined;

  /**
   * @param secrets seals secrets on write; with `open` (workers) it also opens them. Without it,
   *   writing or reading a secret throws (tests that never touch providers may omit it).
   */
  constructor(redis: Redis, keys: Keys, secrets?: SecretSealer & Partial<SecretOpener>) {
    this.redis = redis;
    this.keys = keys;
    this.#secrets = secrets;
  }

  /**
   * Creates the project, or returns the existing one (`created: false`); `deployment` updates.
   * Every field is set if absent in one script, so a concurrent create (another gateway) never
   * sees a half-written record.
   * @throws ProjectBeingDeletedError while a project of this id is being deleted (nothing written)
   */
  async upsertProject(
    org: string,
    id: string,
    name: string,
    deployment?: unknown,
  ): Promise<{ project: ProjectRecord; created: boolean }> {
    const key = this.keys.project(org, id);
    const now = new Date();
    const outcome = await UPSERT_PROJECT.run(
      this.redis,
      [key, this.keys.projects(org), this.keys.projectDeleting(org, id)],
      [now.toISOString(), id, name, now.getTime()],
    );
    if (outcome === -1) throw new ProjectBeingDeletedError(`project ${id} is being deleted`);
    const created = outcome === 1;
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

  /**
   * Updates a session's model settings.
   * @param leaseToken a project owner's lease token (`<worker>:<epoch>`): then the write is fenced
   *   (made only while the token holds the project lease); without it (the gateway's PATCH)
   *   unfenced. Either way only to a session that still exists (a deletion racing the write
   *   leaves no stray hash behind).
   * @returns false when the write was refused (fenced, or the session is gone: nothing written)
   */
  async updateSessionSettings(
    org: string,
    projectId: string,
    id: string,
    settings: { provider?: string; modelId?: string; thinkingLevel?: ThinkingLevel },
    leaseToken?: string,
  ): Promise<boolean> {
    const fields: string[] = [];
    for (const [k, v] of Object.entries(settings)) if (v !== undefined) fields.push(k, String(v));
    if (fields.length === 0) return true;
    const key = this.keys.session(org, projectId, id);
    const written = await UPDATE_SESSION_FENCED.run(
      this.redis,
      [this.keys.lease(org, projectId), key],
      [leaseToken ?? "", ...fields],
    );
    return written === 1;
  }

  /** A session's persisted messages (pi `AgentMessage` objects), oldest first. */
  async sessionMessages(org: string, projectId: string, id: string): Promise<unknown[]> {
    const rows = await this.redis.lrange(this.keys.messages(org, projectId, id), "0", "-1");
    return rows.map((r) => JSON.parse(r) as unknown);
  }

  /**
   * Pending extension UI requests of a session (wire `extension_ui_request` objects exactly as
   * they went onto the stream), oldest first. Answered ones are not listed.
   */
  async pendingUiRequests(org: string, projectId: string, id: string): Promise<unknown[]> {
    const all = await this.redis.hgetall(this.keys.pendingUi(org, projectId, id));
    return Object.entries(all)
      .filter(([field]) => !field.startsWith(UI_TOMBSTONE_PREFIX))
      .map(([, json]) => JSON.parse(json) as { receivedAt: number; request: unknown })
      .sort((a, b) => a.receivedAt - b.receivedAt)
      .map((stored) => stored.request);
  }

  /**
   * Stores a dialog as pending (see pending-ui.ts), only while `leaseToken` holds the project
   * lease. @returns false when fenced (nothing written)
   */
  async addPendingUi(
    org: string,
    projectId: string,
    id: string,
    leaseToken: string,
    request: { id: string },
  ): Promise<boolean> {
    const stored = JSON.stringify({ receivedAt: Date.now(), request });
    const added = await ADD_PENDING_UI.run(
      this.redis,
      [this.keys.lease(org, projectId), this.keys.pendingUi(org, projectId, id)],
      [leaseToken, request.id, stored],
    );
    return added === 1;
  }

  /**
   * Atomically takes a pending dialog out of the hash (leaving an "answered" tombstone).
   * @returns true for exactly one caller per request id: the one whose answer (or timeout) counts
   */
  async resolvePendingUi(
    org: string,
    projectId: string,
    id: string,
    requestId: string,
    by: UiResolution = "answered",
  ): Promise<boolean> {
    const won = await RESOLVE_PENDING_UI.run(
      this.redis,
      [this.keys.pendingUi(org, projectId, id)],
      [UI_TOMBSTONE_TTL_MS, JSON.stringify({ at: Date.now(), by }), requestId],
    );
    return Number(won) === 1;
  }

  /**
   * Resolves every pending dialog of a session as `by` (default "cancelled"): a session disposed
   * or a new owner taking over a dead owner's dialogs. @returns how many were pending
   */
  async clearPendingUi(
    org: string,
    projectId: string,
    id: string,
    by: UiResolution = "cancelled",
  ): Promise<number> {
    return Number(
      await RESOLVE_PENDING_UI.run(
        this.redis,
        [this.keys.pendingUi(org, projectId, id)],
        [UI_TOMBSTONE_TTL_MS, JSON.stringify({ at: Date.now(), by }), "*"],
      ),
    );
  }

  /** Whether a request id is pending, was answered (or timed out / cancelled), or is unknown. */
  async pendingUiStatus(
    org: string,
    projectId: string,
    id: string,
    requestId: string,
  ): Promise<PendingUiStatus> {
    const [pending, tombstone] = await this.redis.hmget(
      this.keys.pendingUi(org, projectId, id),
      requestId,
      `${UI_TOMBSTONE_PREFIX}${requestId}`,
    );
    if (pending != null) return "pending";
    return tombstone != null ? "answered" : "unknown";
  }

  /**
   * Stores (creates or replaces) a custom provider; `apiKey` undefined keeps the stored key, which
   * is sealed before it is written. @throws the sealer's error when secrets may not be stored
   */
  async putProvider(org: string, config: CustomProviderConfig, apiKey?: string): Promise<void> {
    const sealed =
      apiKey === undefined ? undefined : this.sealer().seal(apiKey, customKeyContext(org, config.provider));
    const tx = this.redis.multi().hset(this.keys.providers(org), config.provider, JSON.stringify(config));
    if (sealed !== undefined) tx.hset(this.keys.providerKeys(org), config.provider, sealed);
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
   * Stores (replaces) the API key of a built-in provider for the org, sealed, and bumps the
   * provider revision so workers rebuild the org's runtime. The caller validates the provider id
   * and the key. @throws the sealer's error when secrets may not be stored
   */
  async setProviderCredential(org: string, provider: string, apiKey: string): Promise<void> {
    const stored: StoredCredential = {
      type: "api_key",
      sealed: this.sealer().seal(apiKey, credentialContext(org, provider)),
      updatedAt: new Date().toISOString(),
    };
    await this.redis
      .multi()
      .hset(this.keys.providerCredentials(org), provider, JSON.stringify(stored))
      .incr(this.keys.providersRevision(org))
      .exec();
  }

  /**
   * Removes every org-level record: custom providers, their keys, stored credentials and the
   * project index (projects themselves are purged first by the caller). Bumps nothing: the
   * revision key goes too, so a re-created org starts from scratch.
   */
  async deleteOrgRecords(org: string): Promise<void> {
    await this.redis.del(
      this.keys.providers(org),
      this.keys.providerKeys(org),
      this.keys.providerCredentials(org),
      this.keys.providersRevision(org),
      this.keys.projects(org),
    );
  }

  /** Removes a built-in provider's stored credential; returns whether one existed. */
  async removeProviderCredential(org: string, provider: string): Promise<boolean> {
    const removed = await this.redis.hdel(this.keys.providerCredentials(org), provider);
    if (removed > 0) await this.redis.incr(this.keys.providersRevision(org));
    return removed > 0;
  }

  /** Which built-in providers have a stored credential for the org (never the credential). */
  async providerCredentialStatus(org: string): Promise<ProviderCredentialStatus[]> {
    const all = await this.redis.hgetall(this.keys.providerCredentials(org));
    return Object.entries(all)
      .map(([provider, json]) => {
        const stored = parseCredential(provider, json);
        return { provider, type: stored.type, updatedAt: stored.updatedAt };
      })
      .sort((a, b) => a.provider.localeCompare(b.provider));
  }

  /**
   * Everything a worker needs to build an org's pi runtime: custom providers and built-in
   * credentials with their keys opened, the revision (changes on every provider or credential
   * write) and a digest of the stored values (changes whenever any stored secret does, even
   * without a revision bump; keyed per Registry instance, so compare it only within a process).
   * Worker-only: this returns secrets, and only a registry built with an opener can call it when
   * secrets are stored.
   * @throws Error naming the provider when a stored secret cannot be opened (wrong or missing
   *   PI_FLEET_SECRET_KEY, tampered value); the message never contains the secret
   */
  async providerRuntimeSpec(org: string): Promise<ProviderRuntimeSpec> {
    const res = await this.redis
      .multi()
      .hgetall(this.keys.providers(org))
      .hgetall(this.keys.providerKeys(org))
      .hgetall(this.keys.providerCredentials(org))
      .get(this.keys.providersRevision(org))
      .exec();
    if (!res) throw new Error("provider runtime spec: transaction aborted");
    for (const [err] of res) if (err) throw err;
    const all = (res[0]?.[1] ?? {}) as Record<string, string>;
    const keys = (res[1]?.[1] ?? {}) as Record<string, string>;
    const credentials = (res[2]?.[1] ?? {}) as Record<string, string>;
    const revision = (res[3]?.[1] ?? null) as string | null;
    const providers = Object.values(all)
      .map((json) => JSON.parse(json) as CustomProviderConfig)
      .sort((a, b) => a.provider.localeCompare(b.provider))
      .map((p) => {
        const stored = keys[p.provider];
        if (!stored) return p;
        const apiKey = this.openSecret(
          stored,
          customKeyContext(org, p.provider),
          `custom provider ${p.provider}`,
          true,
        );
        return { ...p, apiKey };
      });
    const builtinKeys: Record<string, string> = {};
    for (const provider of Object.keys(credentials).sort()) {
      const stored = parseCredential(provider, credentials[provider] ?? "");
      builtinKeys[provider] = this.openSecret(
        stored.sealed,
        credentialContext(org, provider),
        `provider ${provider}`,
        false,
      );
    }
    return {
      revision: revision ?? "0",
      credentialDigest: createHmac("sha256", this.#digestSalt)
        .update(JSON.stringify([sortedEntries(keys), sortedEntries(credentials)]))
        .digest("hex")
        .slice(0, 16),
      providers,
      builtinKeys,
    };
  }

  /**
   * Publishes the built-in model catalog (workers, at boot): the document, then its revision (a
   * digest of the JSON), in this order on one connection, so a reader that sees a revision reads
   * a document at least that new.
   */
  async publishCatalog(doc: CatalogDocument): Promise<void> {
    const raw = JSON.stringify(doc);
    const revision = createHash("sha256").update(raw).digest("hex").slice(0, 32);
    await this.redis.pipeline().set(this.keys.catalog, raw).set(this.keys.catalogRevision, revision).exec();
  }

  /**
   * The published catalog, or an empty one when no worker has published yet. The parsed document
   * is kept while the revision is unchanged (one small GET instead of the ~360 KB document and its
   * parse); it is frozen, callers must not modify it. A catalog without a revision (published by
   * an older worker) is read every time.
   */
  async catalog(): Promise<CatalogDocument> {
    const revision = await this.redis.get(this.keys.catalogRevision);
    const cached = this.#catalogCache;
    if (revision !== null && cached?.revision === revision) return cached.doc;
    const raw = await this.redis.get(this.keys.catalog);
    if (!raw) return { models: [], envProviders: [], publishedAt: "" };
    const doc = deepFreeze(JSON.parse(raw) as CatalogDocument);
    if (revision !== null) this.#catalogCache = { revision, doc };
    return doc;
  }

  /**
   * The models an org can see: its custom providers' models first, then the operator presets it
   * does not shadow (the LiteLLM preset, default model first), all available; then the built-in
   * catalog with availability (only the `default` org gets the workers' env keys).
   */
  async listModels(org: string): Promise<ModelRow[]> {
    const [providers, catalog, stored] = await Promise.all([
      this.listProviders(org),
      this.catalog(),
      this.redis.hkeys(this.keys.providerCredentials(org)),
    ]);
    const configs = withPresets(
      providers.map((p) => p.config),
      catalog.presetProviders ?? [],
    );
    const custom = configs.flatMap((config) => config.models.map((m) => customModelRow(config, m)));
    const configured = new Set([...stored, ...(org === "default" ? catalog.envProviders : [])]);
    const builtin = catalog.models.map((m) => ({ ...m, available: configured.has(m.provider) }));
    return [...custom, ...builtin];
  }

  private sealer(): SecretSealer {
    if (!this.#secrets) throw new Error("this registry was built without a secret sealer");
    return this.#secrets;
  }

  private openSecret(stored: string, context: string, what: string, allowLegacyPlaintext: boolean): string {
    const secrets = this.#secrets;
    if (!secrets?.open) throw new Error("this registry cannot open secrets (only workers decrypt)");
    try {
      return secrets.open(stored, context, { allowLegacyPlaintext });
    } catch (err) {
      const reason = err instanceof Error ? err.message : "unknown error";
      throw new Error(`the stored key of ${what} cannot be decrypted: ${reason}`);
    }
  }
}

/** Freezes a parsed JSON value and everything in it (a cached document callers share). */
function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

function parseCredential(provider: string, json: string): StoredCredential {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    value = undefined;
  }
  const c = value as Partial<StoredCredential> | undefined;
  if (c?.type !== "api_key" || typeof c.sealed !== "string") {
    throw new Error(`the stored credential of provider ${provider} is malformed`);
  }
  return { type: c.type, sealed: c.sealed, updatedAt: typeof c.updatedAt === "string" ? c.updatedAt : "" };
}

function sortedEntries(hash: Record<string, string>): [string, string][] {
  return Object.entries(hash).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
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
