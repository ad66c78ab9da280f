// The per-key cap on open streams (PI_FLEET_MAX_STREAMS_PER_KEY): past it, 429 PF_ERR_RATE_LIMITED
// with a message in correct English for a cap of one and of more.
import { ApiError } from "@pi-fleet/contracts";
import type { ApiKeyStore, OrgStore } from "@pi-fleet/tenancy";
import { describe, expect, it } from "vitest";
import { LiveConnections } from "../../apps/gateway/src/auth/live-connections.ts";

/** Open mode: the stores are never read (no re-check). */
function connections(maxPerCredential: number): LiveConnections {
  return new LiveConnections({
    keyed: false,
    maxPerCredential,
    keys: {} as ApiKeyStore,
    orgs: {} as OrgStore,
  });
}

function refusal(live: LiveConnections, open: number): ApiError {
  const auth = { org: "default", role: "admin" as const };
  for (let i = 0; i < open; i++) live.acquire(auth, () => undefined);
  try {
    live.acquire(auth, () => undefined);
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError);
    return err as ApiError;
  }
  throw new Error("expected a refusal");
}

describe("LiveConnections cap", () => {
  it("refuses past the cap with 429, naming it in the singular or plural", () => {
    const one = refusal(connections(1), 1);
    expect(one.status).toBe(429);
    expect(one.code).toBe("PF_ERR_RATE_LIMITED");
    expect(one.message).toBe("at most 1 open stream per API key on one gateway");
    expect(refusal(connections(2), 2).message).toBe("at most 2 open streams per API key on one gateway");
  });
});
