/**
 * The audit log of an org: admin actions and key use (who, what, when), one Redis stream per org
 * (`Keys.audit`), trimmed to about AUDIT_MAXLEN entries. Readable by the org's admins
 * (`GET /v1/audit`) and the operator.
 */
import type { Keys, Redis } from "@pi-fleet/redis";

/** Approximate number of entries kept per org. */
export const AUDIT_MAXLEN = 10_000;

/** One audit entry. */
export interface AuditEntry {
  /** Stream entry id (`<ms>-<seq>`), time-ordered. */
  id: string;
  /** ISO 8601. */
  at: string;
  /** `operator`, `key:<keyId>` or `open`. */
  actor: string;
  /** e.g. `org.create`, `key.create`, `key.revoke`, `POST /v1/projects`. */
  action: string;
  target?: string;
  ip?: string;
}

/** Appends and pages audit entries. */
export class AuditLog {
  readonly #redis: Redis;
  readonly #keys: Keys;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  /** Appends an entry (errors are the caller's to log; an audit failure never fails a request). */
  async append(org: string, entry: Omit<AuditEntry, "id" | "at">, now = new Date()): Promise<void> {
    const body = JSON.stringify({ at: now.toISOString(), ...entry });
    await this.#redis.xadd(this.#keys.audit(org), "MAXLEN", "~", AUDIT_MAXLEN, "*", "d", body);
  }

  /**
   * Newest first: up to `limit` entries older than `before` (an entry id, checked with
   * `isStreamId` by the caller), or the newest. Nothing is older than `0-0`.
   */
  async list(org: string, opts: { limit: number; before?: string }): Promise<AuditEntry[]> {
    if (opts.before === "0-0") return []; // Redis refuses the exclusive bound "(0-0"
    const end = opts.before ? `(${opts.before}` : "+";
    const rows = await this.#redis.xrevrange(this.#keys.audit(org), end, "-", "COUNT", opts.limit);
    return rows.map(([id, fields]) => {
      const d = fields[1] ?? "{}";
      return { id, ...(JSON.parse(d) as Omit<AuditEntry, "id">) };
    });
  }
}
