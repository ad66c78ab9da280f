// SessionGate's deferred runs: when a run of a session ends on its owner, the session's deferred
// run with the lowest seq (the next in line) is promoted once; later ones stay deferred, other
// sessions are untouched, a promotion that fails (the job left the delayed set) is ignored, and a
// run that is already its session's head when deferred is promoted at once.
// The turn-taking itself (waitTurn against Redis) is exercised by the integration and chaos tests;
// test/integration/defer-promotion.test.ts covers the promotion end to end.
import type { EventLog } from "@pi-fleet/streams";
import { describe, expect, it } from "vitest";
import { SessionGate } from "../../apps/worker/src/session-gate.ts";

/** The deferral registry never reads the event log; waitTurn (not called here) would. */
const unusedLog = {} as EventLog;

function recorder() {
  const promoted: string[] = [];
  const promote =
    (id: string, fail = false) =>
    async () => {
      promoted.push(id);
      if (fail) throw new Error(`Job ${id} is not in the delayed state`);
    };
  return { promoted, promote };
}

describe("SessionGate deferred runs", () => {
  it("promotes the session's deferred run with the lowest seq when a run of it ends", () => {
    const gate = new SessionGate(unusedLog);
    const { promoted, promote } = recorder();
    gate.defer("s1", "run-c", 7, promote("run-c"));
    gate.defer("s1", "run-b", 5, promote("run-b"));
    gate.defer("s2", "run-x", 1, promote("run-x"));

    gate.wake("s1");
    expect(promoted).toEqual(["run-b"]);
    // The next end promotes the next one; the other session is never touched.
    gate.wake("s1");
    expect(promoted).toEqual(["run-b", "run-c"]);
    gate.wake("s1");
    expect(promoted).toEqual(["run-b", "run-c"]);
  });

  it("forgets a deferred run that was fetched again, and keeps one entry per job", () => {
    const gate = new SessionGate(unusedLog);
    const { promoted, promote } = recorder();
    gate.defer("s1", "run-b", 5, promote("run-b"));
    gate.settled("s1", "run-b");
    gate.wake("s1");
    expect(promoted).toEqual([]);

    // Deferred twice (fetched, still not its turn, deferred again): promoted once.
    gate.defer("s1", "run-b", 5, promote("run-b-first"));
    gate.defer("s1", "run-b", 5, promote("run-b-second"));
    gate.wake("s1");
    gate.wake("s1");
    expect(promoted).toEqual(["run-b-second"]);
  });

  it("promotes a just-deferred run at once when it is already its session's head", async () => {
    // The run it waited for ended between the turn wait's timeout and the move to delayed.
    let open = ["run-a", "run-b"];
    const log = { openRuns: async () => open } as unknown as EventLog;
    const gate = new SessionGate(log);
    const { promoted, promote } = recorder();
    const ref = { org: "o", project: "p", session: "s1" };
    gate.defer("s1", "run-b", 5, promote("run-b"));
    await gate.recheckDeferred(ref, "run-b");
    expect(promoted).toEqual([]);
    open = ["run-b"];
    await gate.recheckDeferred(ref, "run-b");
    expect(promoted).toEqual(["run-b"]);
    // A failed read leaves the run to its timer.
    gate.defer("s1", "run-c", 6, promote("run-c"));
    const failing = new SessionGate({
      openRuns: async () => Promise.reject(new Error("down")),
    } as unknown as EventLog);
    failing.defer("s1", "run-c", 6, promote("run-c"));
    await expect(failing.recheckDeferred(ref, "run-c")).resolves.toBeUndefined();
    expect(promoted).toEqual(["run-b"]);
  });

  it("ignores a promotion that fails", async () => {
    const gate = new SessionGate(unusedLog);
    const { promoted, promote } = recorder();
    gate.defer("s1", "run-b", 5, promote("run-b", true));
    expect(() => gate.wake("s1")).not.toThrow();
    // Let the rejected promotion settle: an unhandled rejection would fail the test run.
    await new Promise((resolve) => setImmediate(resolve));
    expect(promoted).toEqual(["run-b"]);
  });
});
