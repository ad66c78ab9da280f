// One isolated pi runtime per org, reused by all of the org's sessions on this worker and
// rebuilt when the org's provider revision changes.
import { buildOrgRuntime } from "./org-runtime.ts";
import type { OrgRuntime, OrgRuntimeSpec } from "./types.ts";

/** Caches org runtimes by orgId (see buildOrgRuntime for what get() may throw). */
export class RuntimeCache {
  #entries = new Map<string, { revision: string; runtime: Promise<OrgRuntime> }>();

  /**
   * The runtime for `spec.orgId`, built on first use and rebuilt when `spec.revision` differs from
   * the cached one. Concurrent calls share one build; a failed build is not cached. Sessions
   * opened on an older runtime keep using it until they are disposed.
   */
  get(spec: OrgRuntimeSpec): Promise<OrgRuntime> {
    const cached = this.#entries.get(spec.orgId);
    if (cached && cached.revision === spec.revision) return cached.runtime;
    const runtime = buildOrgRuntime(spec);
    const entry = { revision: spec.revision, runtime };
    this.#entries.set(spec.orgId, entry);
    runtime.catch(() => {
      if (this.#entries.get(spec.orgId) === entry) this.#entries.delete(spec.orgId);
    });
    return runtime;
  }

  /** Drops the cached runtime of `orgId` (the next get() rebuilds it). */
  evict(orgId: string): void {
    this.#entries.delete(orgId);
  }
}
