// The CLI's event renderer (apps/cli/src/render-events.ts): wire events → stdout text and
// stderr lines, line handling across the two streams, argument summaries, run outcomes.
import { describe, expect, it } from "vitest";
import {
  type Chunk,
  EventRenderer,
  formatUsage,
  isDialog,
  oneLine,
  runOutcome,
  summarizeArgs,
} from "../../apps/cli/src/render-events.ts";

const text = (delta: string) => ({
  type: "message_update",
  assistantMessageEvent: { type: "text_delta", contentIndex: 0, delta },
});
const thinking = (delta: string) => ({
  type: "message_update",
  assistantMessageEvent: { type: "thinking_delta", contentIndex: 0, delta },
});

/** Renders `events` and returns the text per stream (and every chunk). */
function renderAll(events: object[], opts = {}) {
  const r = new EventRenderer(opts);
  const chunks: Chunk[] = [];
  for (const e of events) chunks.push(...r.render(e as { type: string }));
  chunks.push(...r.finish());
  const of = (stream: Chunk["stream"]) =>
    chunks
      .filter((c) => c.stream === stream)
      .map((c) => c.text)
      .join("");
  return { chunks, stdout: of("stdout"), stderr: of("stderr"), renderer: r };
}

describe("EventRenderer", () => {
  it("streams text deltas to stdout as they come", () => {
    const { stdout, stderr } = renderAll([text("Hel"), text("lo "), text("world"), { type: "message_end" }]);
    expect(stdout).toBe("Hello world\n");
    expect(stderr).toBe("");
  });

  it("puts tool activity on stderr, dimmed, after ending the half-written text line", () => {
    const { chunks, stdout, stderr } = renderAll([
      text("running"),
      {
        type: "tool_execution_start",
        toolCallId: "t1",
        toolName: "bash",
        args: { command: "echo hi > out.txt" },
      },
      {
        type: "tool_execution_end",
        toolCallId: "t1",
        toolName: "bash",
        result: { content: [{ type: "text", text: "hi\n" }] },
        isError: false,
      },
      text("done"),
    ]);
    expect(stdout).toBe("running\ndone\n");
    expect(stderr).toBe("→ bash  echo hi > out.txt\n✓ bash  hi\n");
    // The newline that ends "running" comes before the first stderr line.
    expect(chunks.map((c) => c.stream)).toEqual(["stdout", "stdout", "stderr", "stderr", "stdout", "stdout"]);
    expect(chunks.find((c) => c.text.startsWith("→"))?.tone).toBe("dim");
  });

  it("marks failed tools red with the first line of the error", () => {
    const { chunks } = renderAll([
      {
        type: "tool_execution_end",
        toolName: "read",
        result: { content: [{ type: "text", text: "\nENOENT: no such file\nmore" }] },
        isError: true,
      },
    ]);
    expect(chunks).toEqual([
      { stream: "stderr", text: "✗ read failed: ENOENT: no such file\n", tone: "red" },
    ]);
  });

  it("reports each run outcome on its own line", () => {
    const usage = { input: 1000, output: 234, cacheRead: 0, cacheWrite: 0, totalTokens: 1234, cost: 0.0012 };
    expect(renderAll([{ type: "run_finished", runId: "r", sessionId: "s", usage }]).stderr).toBe(
      "✓ run finished · 1,234 tokens · $0.0012\n",
    );
    const failed = renderAll([
      text("partial"),
      { type: "run_failed", runId: "r", error: "500: fake failure\nstack" },
    ]);
    expect(failed.stdout).toBe("partial\n");
    expect(failed.stderr).toBe("✗ run failed: 500: fake failure ⏎ stack\n");
    expect(failed.chunks.at(-1)?.tone).toBe("red");
    expect(renderAll([{ type: "run_aborted", runId: "r" }]).stderr).toBe("■ run aborted\n");
    expect(renderAll([{ type: "run_interrupted", runId: "r", reason: "worker_lost" }]).stderr).toContain(
      "interrupted (worker_lost)",
    );
    expect(renderAll([{ type: "run_cancelled", runId: "r" }]).stderr).toContain("cancelled");
  });

  it("shows run_queued / run_started and user messages only when asked (tail)", () => {
    const events = [
      { type: "run_queued", runId: "r1", position: 2 },
      { type: "run_started", runId: "r1" },
      {
        type: "message_start",
        message: { role: "user", content: [{ type: "text", text: "fix it\nplease" }] },
      },
      { type: "message_start", message: { role: "assistant", content: [] } },
    ];
    expect(renderAll(events)).toMatchObject({ stdout: "", stderr: "" });
    const tail = renderAll(events, { showRuns: true, showUser: true });
    expect(tail.stderr).toBe("· run r1 queued (2 ahead)\n· run r1 started\n");
    expect(tail.stdout).toBe("> fix it\n> please\n");
  });

  it("streams thinking dimmed on stderr unless hidden", () => {
    const shown = renderAll([thinking("hmm"), text("answer")]);
    expect(shown.stderr).toBe("hmm\n");
    expect(shown.stdout).toBe("answer\n");
    expect(shown.chunks[0]).toEqual({ stream: "stderr", text: "hmm", tone: "dim" });
    expect(renderAll([thinking("hmm"), text("answer")], { showThinking: false }).stderr).toBe("");
  });

  it("shows a dialog with how to answer it, and notifications", () => {
    const { stderr } = renderAll(
      [
        {
          type: "extension_ui_request",
          id: "q1",
          method: "confirm",
          title: "Run bash?",
          message: "rm -rf x",
        },
        { type: "extension_ui_request", id: "q2", method: "select", title: "Env", options: ["dev", "prod"] },
        {
          type: "extension_ui_request",
          id: "n1",
          method: "notify",
          message: "bash blocked",
          notifyType: "warning",
        },
        { type: "extension_ui_request", id: "s1", method: "setStatus", statusKey: "k" },
      ],
      { projectId: "demo", sessionId: "s-1" },
    );
    expect(stderr).toBe(
      [
        "? Run bash?: rm -rf x",
        "  waiting for an answer: pifleet answer demo s-1  (request q1)",
        "? Env [dev | prod]",
        "  waiting for an answer: pifleet answer demo s-1  (request q2)",
        "[warning] bash blocked",
        "",
      ].join("\n"),
    );
  });

  it("tracks the cursor: at line start only after whole lines", () => {
    const r = new EventRenderer();
    expect(r.atLineStart).toBe(true);
    r.render(text("abc"));
    expect(r.atLineStart).toBe(false);
    expect(r.finish()).toEqual([{ stream: "stdout", text: "\n" }]);
    expect(r.atLineStart).toBe(true);
    expect(r.finish()).toEqual([]);
  });

  it("ignores events it does not know", () => {
    expect(
      renderAll([{ type: "agent_start" }, { type: "turn_end" }, { type: "something_new", x: 1 }]).chunks,
    ).toEqual([]);
  });
});

describe("summaries", () => {
  it("summarizes tool arguments on one short line", () => {
    expect(summarizeArgs("bash", { command: "npm test", timeout: 5 })).toBe("npm test");
    expect(summarizeArgs("read", { path: "src/a.ts", offset: 10 })).toBe("src/a.ts");
    expect(summarizeArgs("grep", { pattern: "TODO", path: "src" })).toBe("TODO src");
    expect(summarizeArgs("deploy", { env: "prod", dryRun: true, nested: { a: 1 } })).toBe(
      "env=prod dryRun=true",
    );
    expect(summarizeArgs("x", { nested: { a: 1 } })).toBe('{"nested":{"a":1}}');
    expect(summarizeArgs("x", {})).toBe("");
    expect(summarizeArgs("bash", { command: "echo a\necho b" })).toBe("echo a ⏎ echo b");
    const long = summarizeArgs("bash", { command: "x".repeat(200) }, 40);
    expect(long).toHaveLength(40);
    expect(long.endsWith("…")).toBe(true);
  });

  it("formats usage and one-liners", () => {
    expect(formatUsage({ totalTokens: 1234567, cost: 1.5 })).toBe("1,234,567 tokens · $1.50");
    expect(formatUsage({ totalTokens: 10, cost: 0 })).toBe("10 tokens");
    expect(formatUsage(undefined)).toBe("");
    expect(oneLine("  a \n\n  b  ")).toBe("a ⏎ b");
  });

  it("maps terminal events to outcomes and recognises dialogs", () => {
    expect(runOutcome({ type: "run_finished" })).toBe("finished");
    expect(runOutcome({ type: "run_failed" })).toBe("failed");
    expect(runOutcome({ type: "run_aborted" })).toBe("aborted");
    expect(runOutcome({ type: "run_interrupted" })).toBe("interrupted");
    expect(runOutcome({ type: "run_cancelled" })).toBe("cancelled");
    expect(runOutcome({ type: "run_started" })).toBeUndefined();
    expect(isDialog({ type: "extension_ui_request", method: "editor" })).toBe(true);
    expect(isDialog({ type: "extension_ui_request", method: "notify" })).toBe(false);
  });
});
