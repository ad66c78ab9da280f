/**
 * Long-lived connections (SSE streams, WebSockets) and the credentials they were opened with.
 * Two jobs: a per-credential cap on open connections on this gateway (`PI_FLEET_MAX_STREAMS_PER_KEY`,
 * 429 beyond), and, in keyed mode, a once-a-second re-check of every credential in use so a revoked
 * or expired key, or a disabled org, loses its open streams within about a second on every
 * gateway (requests are checked on arrival anyway).
 */
import { ApiError } from "@pi-fleet/contracts";
import type { ApiKeyStore, OrgStore } from "@pi-fleet/tenancy";
import type { RequestAuth } from "./request-auth.ts";

/** How often credentials of open connections are re-checked (ms). */
export const RECHECK_INTERVAL_MS = 1000;

interface Holder {
  auth: RequestAuth;
  close: () => void;
}

/** Open long-lived connections of one gateway, by credential. */
export class LiveConnections {
  readonly #byCredential = new Map<string, Set<Holder>>();
  readonly #maxPerCredential: number;
  readonly #keys: ApiKeyStore;
  readonly #orgs: OrgStore;
  #timer: NodeJS.Timeout | undefined;
  #checking = false;

  /**
   * @param opts.keyed whether API keys are in use (open mode never re-checks)
   * @param opts.maxPerCredential open connections allowed per key (per org in open mode)
   */
  constructor(opts: { keyed: boolean; maxPerCredential: number; keys: ApiKeyStore; orgs: OrgStore }) {
    this.#maxPerCredential = opts.maxPerCredential;
    this.#keys = opts.keys;
    this.#orgs = opts.orgs;
    if (opts.keyed) {
      this.#timer = setInterval(() => void this.recheck(), RECHECK_INTERVAL_MS);
      this.#timer.unref();
    }
  }

  /**
   * Registers a connection; `close` is called if its credential stops being valid.
   * @returns the function that unregisters it (idempotent)
   * @throws ApiError 429 PF_ERR_RATE_LIMITED when the credential has too many open connections
   */
  acquire(auth: RequestAuth, close: () => void): () => void {
    const id = credentialOf(auth);
    let set = this.#byCredential.get(id);
    if (!set) {
      set = new Set();
      this.#byCredential.set(id, set);
    }
    if (set.size >= this.#maxPerCredential) {
      throw new ApiError(
        "PF_ERR_RATE_LIMITED",
        `at most ${this.#maxPerCredential} open ${this.#maxPerCredential === 1 ? "stream" : "streams"} per API key on one gateway`,
      );
    }
    const holder: Holder = { auth, close };
    set.add(holder);
    return () => {
      set.delete(holder);
      if (set.size === 0 && this.#byCredential.get(id) === set) this.#byCredential.delete(id);
    };
  }

  /** Closes the connections whose key was revoked or expired or whose org was disabled or deleted. */
  async recheck(now = Date.now()): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      for (const [id, set] of [...this.#byCredential]) {
        const first = set.values().next().value;
        if (!first?.auth.keyId) continue;
        let live: boolean;
        try {
          live =
            (await this.#keys.isLive(first.auth.keyId, now)) && (await this.#orgs.isActive(first.auth.org));
        } catch {
          continue; // Redis unavailable: keep streams; requests fail on their own
        }
        if (live) continue;
        for (const holder of [...set]) holder.close();
        this.#byCredential.delete(id);
      }
    } finally {
      this.#checking = false;
    }
  }

  /** Stops the re-check timer. */
  close(): void {
    if (this.#timer) clearInterval(this.#timer);
  }
}

function credentialOf(auth: RequestAuth): string {
  return auth.keyId ? `key:${auth.keyId}` : `org:${auth.org}`;
}
