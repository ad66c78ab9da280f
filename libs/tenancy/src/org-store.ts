/**
 * Orgs of a keyed deployment (API.md "Tenancy and auth"): created, renamed, disabled and deleted by
 * the operator. The `default` org of open mode is implicit and never stored. Deleting an org here
 * removes only its record and its API keys; the caller purges projects, streams, queues, secrets
 * and files first (apps/gateway purge).
 */
import type { Keys, Redis } from "@pi-fleet/redis";

/** An org as stored. */
export interface OrgRecord {
  id: string;
  name: string;
  disabled: boolean;
  /** ISO 8601. */
  createdAt: string;
}

/** Org records in Redis (`Keys.org`, `Keys.orgs`). */
export class OrgStore {
  readonly #redis: Redis;
  readonly #keys: Keys;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  /** Creates an org; false when one with this id exists (ids are validated slugs). */
  async create(id: string, name: string | undefined, now = new Date()): Promise<OrgRecord | undefined> {
    const record: OrgRecord = { id, name: name ?? id, disabled: false, createdAt: now.toISOString() };
    const added = await this.#redis.zadd(this.#keys.orgs, "NX", String(now.getTime()), id);
    if (added === 0) return undefined;
    await this.#redis.hset(this.#keys.org(id), {
      name: record.name,
      disabled: "0",
      createdAt: record.createdAt,
    });
    return record;
  }

  /** The org, or undefined. */
  async get(id: string): Promise<OrgRecord | undefined> {
    const h = await this.#redis.hgetall(this.#keys.org(id));
    return h.createdAt ? toRecord(id, h) : undefined;
  }

  /** All orgs, oldest first. */
  async list(): Promise<OrgRecord[]> {
    const ids = await this.#redis.zrange(this.#keys.orgs, "0", "-1");
    const rows = await Promise.all(ids.map((id) => this.get(id)));
    return rows.filter((r): r is OrgRecord => r !== undefined);
  }

  /** Renames and/or (dis)ables an org; undefined when it does not exist. */
  async patch(id: string, patch: { name?: string; disabled?: boolean }): Promise<OrgRecord | undefined> {
    if (!(await this.get(id))) return undefined;
    const fields: Record<string, string> = {};
    if (patch.name !== undefined) fields.name = patch.name;
    if (patch.disabled !== undefined) fields.disabled = patch.disabled ? "1" : "0";
    if (Object.keys(fields).length > 0) await this.#redis.hset(this.#keys.org(id), fields);
    return this.get(id);
  }

  /** Whether the org exists and is not disabled. */
  async isActive(id: string): Promise<boolean> {
    return (await this.#redis.hget(this.#keys.org(id), "disabled")) === "0";
  }

  /** Removes the org record, its key records and its audit log; false when it did not exist. */
  async delete(id: string): Promise<boolean> {
    const keyIds = await this.#redis.smembers(this.#keys.orgApiKeys(id));
    const removed = await this.#redis.zrem(this.#keys.orgs, id);
    await this.#redis.del(
      this.#keys.org(id),
      this.#keys.orgApiKeys(id),
      this.#keys.audit(id),
      ...keyIds.map((k) => this.#keys.apiKey(k)),
    );
    return removed > 0;
  }
}

function toRecord(id: string, h: Record<string, string>): OrgRecord {
  return { id, name: h.name ?? id, disabled: h.disabled === "1", createdAt: h.createdAt ?? "" };
}
