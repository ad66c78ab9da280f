// DisabledOrgWatch (apps/worker): one disabled org whose interrupt never settles (pi's abort
// waits for a tool that ignores its signal) neither stops the checks for other orgs nor holds
// the worker's shutdown, and a disabled org's running commands are stopped on every check, also
// while its run interrupt hangs. Ownership and Redis are fakes: the watch's own scheduling is
// under test.
import { waitFor } from "@pi-fleet/testkit";
import { describe, expect, it } from "vitest";
import { DisabledOrgWatch } from "../../apps/worker/src/disabled-org-watch.ts";

function fakes(disabled: Set<string>) {
  const calls: string[] = [];
  /** Orgs whose commands the watch stopped, once per call. */
  const stops: string[] = [];
  const ownership = {
    runningOrgs: () => new Set(["stuck", "other"]),
    interruptOrg: (org: string) => {
      calls.push(org);
      return org === "stuck" ? new Promise<number>(() => {}) : Promise.resolve(1);
    },
    abortOrgCommands: (org: string) => {
      stops.push(org);
      return 1;
    },
  };
  const ctx = {
    redis: {
      pipeline: () => {
        const orgs: string[] = [];
        const p = {
          hget: (key: string) => {
            orgs.push(key);
            return p;
          },
          exec: async () => orgs.map((key) => [null, disabled.has(key) ? "1" : null]),
        };
        return p;
      },
    },
    keys: { org: (org: string) => org },
    logger: { warn: () => {} },
  };
  return { calls, stops, ownership, ctx };
}

describe("DisabledOrgWatch", () => {
  it("keeps checking other orgs while one org's interrupt hangs, and closes at once", async () => {
    const disabled = new Set(["stuck"]);
    const { calls, ownership, ctx } = fakes(disabled);
    const watch = new DisabledOrgWatch(ctx as never, ownership as never, 20);
    await waitFor(() => calls.includes("stuck"));
    // Disabled later, while the stuck interrupt hangs: the next checks still run and reach it.
    disabled.add("other");
    await waitFor(() => calls.filter((org) => org === "other").length >= 2);
    const started = performance.now();
    await watch.close();
    expect(performance.now() - started).toBeLessThan(1000);
    // The hanging interrupt was started once (not again while under way); the other org's on
    // each check after it was disabled.
    expect(calls.filter((org) => org === "stuck")).toHaveLength(1);
    expect(calls.filter((org) => org === "other").length).toBeGreaterThanOrEqual(2);
  });

  it("stops a disabled org's running commands on every check, also while its run interrupt hangs", async () => {
    // Only runs were interrupted: a user bash command (up to its time cap) or a compact went on.
    const disabled = new Set(["stuck"]);
    const { calls, stops, ownership, ctx } = fakes(disabled);
    const watch = new DisabledOrgWatch(ctx as never, ownership as never, 20);
    // Commands that arrive while the org's interrupt hangs are stopped by the next checks.
    await waitFor(() => stops.filter((org) => org === "stuck").length >= 3);
    await watch.close();
    expect(calls.filter((org) => org === "stuck")).toHaveLength(1);
    expect(stops).not.toContain("other");
  });
});
