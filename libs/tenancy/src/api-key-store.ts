/**
 * API keys: created with a role and optional expiry, shown once, stored only as a hash, revoked by
 * deleting the record (so every gateway refuses the key on its next request: nothing is cached).
 */
import type { ApiKeyRole } from "@pi-fleet/contracts";
import type { Keys, Redis } from "@pi-fleet/redis";
import { generateApiKey, parseApiKey, secretMatches } from "./api-key-secret.ts";

/** An API key as listed (never the secret or its hash). */
export interface ApiKeyRecord {
  id: string;
  org: string;
  role: ApiKeyRole;
  name?: string;
  /** ISO 8601. */
  createdAt: string;
  /** ISO 8601; after it the key is refused. */
  expiresAt?: string;
  /** ISO 8601, updated at most once a minute. */
  lastUsedAt?: string;
}

/** What a valid key grants. */
export interface KeyPrincipal {
  org: string;
  role: ApiKeyRole;
  keyId: string;
}

const ROLES: ReadonlySet<string> = new Set(["admin", "member", "viewer"]);
/** `lastUsedAt` is written at most this often per key (ms). */
const LAST_USED_RESOLUTION_MS = 60_000;

/** API key records in Redis (`Keys.apiKey`, `Keys.orgApiKeys`). */
export class ApiKeyStore {
  readonly #redis: Redis;
  readonly #keys: Keys;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  /** Creates a key for `org` and returns its record plus the key text (shown once). */
  async create(
    org: string,
    role: ApiKeyRole,
    opts: { name?: string; expiresAt?: string } = {},
    now = new Date(),
  ): Promise<ApiKeyRecord & { key: string }> {
    const { keyId, key, hash } = generateApiKey();
    const record: ApiKeyRecord = {
      id: keyId,
      org,
      role,
      createdAt: now.toISOString(),
      ...(opts.name ? { name: opts.name } : {}),
      ...(opts.expiresAt ? { expiresAt: new Date(opts.expiresAt).toISOString() } : {}),
    };
    await this.#redis
      .multi()
      .hset(this.#keys.apiKey(keyId), {
        org,
        role,
        hash,
        createdAt: record.createdAt,
        ...(record.name ? { name: record.name } : {}),
        ...(record.expiresAt ? { expiresAt: record.expiresAt } : {}),
      })
      .sadd(this.#keys.orgApiKeys(org), keyId)
      .exec();
    return { ...record, key };
  }

  /** The org's keys, oldest first. */
  async list(org: string): Promise<ApiKeyRecord[]> {
    const ids = await this.#redis.smembers(this.#keys.orgApiKeys(org));
    const rows = await Promise.all(ids.map((id) => this.#read(id)));
    return rows
      .filter((r): r is ApiKeyRecord => r !== undefined && r.org === org)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** Revokes (deletes) a key of `org`; false when the org has no such key. */
  async revoke(org: string, keyId: string): Promise<boolean> {
    const owner = await this.#redis.hget(this.#keys.apiKey(keyId), "org");
    if (owner !== org) return false;
    await this.#redis.multi().del(this.#keys.apiKey(keyId)).srem(this.#keys.orgApiKeys(org), keyId).exec();
    return true;
  }

  /**
   * Checks a presented key: format, hash (constant-time), expiry. Returns what it grants, or
   * undefined for anything invalid, revoked or expired. Does not check whether the org is enabled.
   */
  async verify(presented: string, now = Date.now()): Promise<KeyPrincipal | undefined> {
    const parsed = parseApiKey(presented);
    if (!parsed) return undefined;
    const h = await this.#redis.hgetall(this.#keys.apiKey(parsed.keyId));
    if (!h.hash || !h.org || !h.role || !ROLES.has(h.role)) return undefined;
    if (!secretMatches(parsed.secret, h.hash)) return undefined;
    if (h.expiresAt && Date.parse(h.expiresAt) <= now) return undefined;
    const lastUsed = h.lastUsedAt ? Date.parse(h.lastUsedAt) : 0;
    if (now - lastUsed >= LAST_USED_RESOLUTION_MS) {
      // XX-like: only when the record still exists (a concurrent revoke must not resurrect it).
      void this.#redis
        .eval(
          "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'lastUsedAt', ARGV[1]) end",
          1,
          this.#keys.apiKey(parsed.keyId),
          new Date(now).toISOString(),
        )
        .catch(() => undefined);
    }
    return { org: h.org, role: h.role as ApiKeyRole, keyId: parsed.keyId };
  }

  /**
   * Whether a key id still names a live key: present (not revoked) and not expired. Used to cut
   * open streams of revoked keys without keeping their secrets.
   */
  async isLive(keyId: string, now = Date.now()): Promise<boolean> {
    const [org, expiresAt] = await this.#redis.hmget(this.#keys.apiKey(keyId), "org", "expiresAt");
    if (!org) return false;
    return !expiresAt || Date.parse(expiresAt) > now;
  }

  async #read(keyId: string): Promise<ApiKeyRecord | undefined> {
    const h = await this.#redis.hgetall(this.#keys.apiKey(keyId));
    if (!h.org || !h.role || !h.createdAt) return undefined;
    return {
      id: keyId,
      org: h.org,
      role: h.role as ApiKeyRole,
      createdAt: h.createdAt,
      ...(h.name ? { name: h.name } : {}),
      ...(h.expiresAt ? { expiresAt: h.expiresAt } : {}),
      ...(h.lastUsedAt ? { lastUsedAt: h.lastUsedAt } : {}),
    };
  }
}
