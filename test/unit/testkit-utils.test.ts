// Unit checks for the testkit's small pure helpers: directive parsing/planning for the fake
// LLM, per-file key prefixes and the waitFor poller.

import { parseDirectives, planReply, splitPieces, uniquePrefix, waitFor } from "@pi-fleet/testkit";
import { describe, expect, it } from "vitest";

describe("fake LLM directives", () => {
  it("parses names and args; args run to the first ]] and may contain ] and colons", () => {
    expect(parseDirectives("a [[delay:20]] b [[bash:[ -f x ] && echo a:b]] [[tag]]")).toEqual([
      { name: "delay", arg: "20" },
      { name: "bash", arg: "[ -f x ] && echo a:b" },
      { name: "tag", arg: "" },
    ]);
    expect(parseDirectives("no directives [here] [[ spaced ]]")).toEqual([]);
  });

  it("applies precedence fail > bash > deltas > reply and combines delay", () => {
    const ask = (text: string, extra: { role: string; content: string }[] = []) =>
      planReply({ messages: [{ role: "user", content: text }, ...extra] }, "call_1");
    expect(ask("[[reply:x]] [[fail:502]] [[delay:5]]")).toEqual({ kind: "fail", status: 502, delayMs: 5 });
    expect(ask("[[fail:200]]")).toMatchObject({ kind: "fail", status: 500 });
    expect(ask("[[deltas:2]] [[bash:ls]]")).toMatchObject({
      finishReason: "tool_calls",
      toolCall: { id: "call_1", name: "bash", arguments: '{"command":"ls"}' },
    });
    expect(ask("[[reply:hi]] [[deltas:2]]")).toMatchObject({ contentPieces: ["d0 ", "d1 "] });
    expect(ask("[[tag:zz]] [[reply:hi]] [[unknown:1]]")).toEqual({
      kind: "reply",
      delayMs: 0,
      contentPieces: ["h", "i"],
      finishReason: "stop",
    });
    expect(ask("[[bash:ls]]", [{ role: "tool", content: " out \n" }])).toMatchObject({
      contentPieces: expect.any(Array),
      finishReason: "stop",
    });
  });

  it("splits text into at most N pieces that concatenate back", () => {
    expect(splitPieces("")).toEqual([]);
    const pieces = splitPieces("abcdefghij", 4);
    expect(pieces.length).toBeLessThanOrEqual(4);
    expect(pieces.join("")).toBe("abcdefghij");
  });
});

describe("uniquePrefix", () => {
  it("slugs the label and appends 6 random hex chars", () => {
    const p = uniquePrefix("Queue: Fairness / Org#1");
    expect(p).toMatch(/^t-queue-fairness-org-1-[0-9a-f]{6}$/);
    expect(uniquePrefix("Queue: Fairness / Org#1")).not.toBe(p);
    expect(uniquePrefix("***")).toMatch(/^t-x-[0-9a-f]{6}$/);
    expect(uniquePrefix("a".repeat(100)).length).toBe("t-".length + 32 + "-".length + 6);
  });
});

describe("waitFor", () => {
  it("polls until truthy, treating throws as not-yet", async () => {
    let calls = 0;
    const value = await waitFor(
      () => {
        calls++;
        if (calls < 3) throw new Error("not yet");
        return calls < 5 ? 0 : { calls };
      },
      { intervalMs: 1 },
    );
    expect(value).toEqual({ calls: 5 });
  });

  it("rejects after the timeout with the message and the last error", async () => {
    const err = await waitFor(
      () => {
        throw new Error("boom");
      },
      { timeoutMs: 50, intervalMs: 5, message: "the thing" },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/timed out after 50ms: the thing \(last error: boom\)/);
    expect(((err as Error).cause as Error).message).toBe("boom");
  });
});
