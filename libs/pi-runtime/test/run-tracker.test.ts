// RunTracker: outcome classification and usage sums from pi's message_end and compaction_end events.
import { describe, expect, it } from "vitest";
import { RunTracker } from "../src/run-tracker.ts";

const assistantEnd = (stopReason: string, extra: Record<string, unknown> = {}) => ({
  type: "message_end",
  message: {
    role: "assistant",
    stopReason,
    usage: { input: 10, output: 5, cacheRead: 2, cacheWrite: 1, totalTokens: 18, cost: { total: 0.25 } },
    ...extra,
  },
});

describe("RunTracker", () => {
  it("sums usage over assistant messages only and finishes on stop/length/toolUse", () => {
    const t = new RunTracker();
    t.observe({ type: "message_end", message: { role: "user", usage: { input: 999 } } });
    t.observe(assistantEnd("toolUse"));
    t.observe({ type: "message_update", message: { role: "assistant" } });
    t.observe(assistantEnd("length"));
    expect(t.outcome()).toEqual({
      status: "finished",
      stopReason: "length",
      usage: { input: 20, output: 10, cacheRead: 4, cacheWrite: 2, totalTokens: 36, cost: 0.5 },
    });
  });

  it("adds the usage of a compaction summary generated during the run", () => {
    const t = new RunTracker();
    t.observe(assistantEnd("toolUse"));
    t.observe({
      type: "compaction_end",
      result: {
        summary: "…",
        usage: { input: 100, output: 20, cacheRead: 0, cacheWrite: 0, totalTokens: 120, cost: { total: 1 } },
      },
    });
    t.observe({ type: "compaction_end", result: undefined }); // an aborted compaction: nothing
    t.observe(assistantEnd("stop"));
    expect(t.outcome().usage).toEqual({
      input: 120,
      output: 30,
      cacheRead: 4,
      cacheWrite: 2,
      totalTokens: 156,
      cost: 1.5,
    });
  });

  it("fails with pi's errorMessage, unless a later retry succeeded", () => {
    const failed = new RunTracker();
    failed.observe(assistantEnd("error", { errorMessage: "overloaded" }));
    expect(failed.outcome()).toMatchObject({ status: "failed", error: "overloaded", stopReason: "error" });
    const retried = new RunTracker();
    retried.observe(assistantEnd("error", { errorMessage: "overloaded" }));
    retried.observe(assistantEnd("stop"));
    expect(retried.outcome().status).toBe("finished");
  });

  it("says aborted when abort was requested, whatever pi reported (H15)", () => {
    const t = new RunTracker();
    t.observe(assistantEnd("error", { errorMessage: "This operation was aborted" }));
    t.markAborted();
    expect(t.outcome()).toMatchObject({ status: "aborted", stopReason: "error" });
  });

  it("fails on a thrown prompt or when no assistant message came", () => {
    const thrown = new RunTracker();
    thrown.markThrown("No API key found for x.");
    expect(thrown.outcome()).toMatchObject({ status: "failed", error: "No API key found for x." });
    expect(new RunTracker().outcome()).toMatchObject({ status: "failed", error: "no assistant response" });
  });
});
