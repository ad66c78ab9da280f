// openSession + run against pi-ai's faux provider: the bash round trip, the wire event order and
// lean form, outcomes, usage, model selection and settings.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fauxAssistantMessage, fauxText, fauxToolCall } from "@earendil-works/pi-ai";
import { describe, expect, it } from "vitest";
import { openSession, PiRuntimeError, RuntimeCache } from "../src/index.ts";
import { collapsedLabels, fauxRuntime, onCleanup, recordingSink, sessionDirs } from "./helpers.ts";

describe("openSession + run", () => {
  it("runs a bash round trip in the project dir and streams lean events in pi's order", async () => {
    const dirs = await sessionDirs();
    const { runtime, faux } = await fauxRuntime();
    faux.setResponses([
      fauxAssistantMessage([fauxText("running"), fauxToolCall("bash", { command: "echo hi > out.txt" })], {
        stopReason: "toolUse",
      }),
      fauxAssistantMessage("done"),
    ]);
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    const { events, sink } = recordingSink();

    const outcome = await session.run("make out.txt", {}, sink);

    expect(outcome.status).toBe("finished");
    expect(outcome.stopReason).toBe("stop");
    expect(outcome.usage.totalTokens).toBeGreaterThan(0);
    expect(readFileSync(join(dirs.projectDir, "out.txt"), "utf8")).toBe("hi\n");
    expect(existsSync(dirs.sessionFile)).toBe(true);
    expect(collapsedLabels(events)).toEqual([
      "agent_start",
      "turn_start",
      "message_start:system",
      "message_end:system",
      "message_start:user",
      "message_end:user",
      "message_start:assistant",
      "message_update:text_start",
      "message_update:text_delta",
      "message_update:text_end",
      "message_update:toolcall_start",
      "message_update:toolcall_delta",
      "message_update:toolcall_end",
      "message_end:assistant",
      "tool_execution_start",
      "tool_execution_update",
      "tool_execution_end",
      "message_start:toolResult",
      "message_end:toolResult",
      "turn_end",
      "turn_start",
      "message_start:assistant",
      "message_update:text_start",
      "message_update:text_delta",
      "message_update:text_end",
      "message_end:assistant",
      "turn_end",
      "agent_end",
      "agent_settled",
    ]);
    for (const e of events.filter((x) => x.type === "message_update")) {
      expect(Object.keys(e).sort()).toEqual(["assistantMessageEvent", "type"]);
      expect(e.assistantMessageEvent).not.toHaveProperty("partial");
    }
    const toolcallStart = events.find(
      (e) =>
        e.type === "message_update" &&
        (e.assistantMessageEvent as { type: string }).type === "toolcall_start",
    );
    expect(toolcallStart?.assistantMessageEvent).toMatchObject({ toolName: "bash", id: expect.any(String) });
    expect(() => JSON.stringify(events)).not.toThrow();
    expect(session.messages().map((m) => (m as { role: string }).role)).toEqual([
      "user",
      "assistant",
      "toolResult",
      "assistant",
    ]);
  });

  it("reports a provider error as failed with pi's errorMessage", async () => {
    const dirs = await sessionDirs();
    const { runtime, faux } = await fauxRuntime();
    const failure = fauxAssistantMessage("", { stopReason: "error", errorMessage: "upstream exploded" });
    faux.setResponses([failure, failure, failure]); // first try + 2 retries
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    const outcome = await session.run("hi", {}, () => {});
    expect(outcome).toMatchObject({ status: "failed", error: "upstream exploded", stopReason: "error" });
  });

  it("turns a second concurrent run into failed/busy and keeps a throwing sink away from pi", async () => {
    const dirs = await sessionDirs();
    const { runtime, faux } = await fauxRuntime({ tokensPerSecond: 200 });
    faux.setResponses([fauxAssistantMessage("word ".repeat(40))]);
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    const first = session.run("hi", {}, () => {
      throw new Error("sink failure");
    });
    const second = await session.run("again", {}, () => {});
    expect(second.status).toBe("failed");
    expect(second.error).toMatch(/busy/);
    expect((await first).status).toBe("finished");
    expect(session.isStreaming).toBe(false);
  });

  it("fails (no throw) on a preflight error without server paths in the message", async () => {
    const dirs = await sessionDirs();
    const runtime = await new RuntimeCache().get({
      orgId: "o",
      revision: "1",
      providers: [],
      builtinKeys: { anthropic: "sk-test" },
    });
    const anthropic = runtime.listModels().find((m) => m.provider === "anthropic" && m.available);
    expect(anthropic).toBeDefined();
    const session = await openSession({
      runtime,
      ...dirs,
      model: { provider: "anthropic", modelId: anthropic?.id ?? "" },
    });
    onCleanup(() => session.dispose());
    await (await import("../src/org-runtime.ts")).piModelRuntime(runtime).removeRuntimeApiKey("anthropic");
    const outcome = await session.run("hi", {}, () => {});
    expect(outcome.status).toBe("failed");
    expect(outcome.error).toBe("No API key found for anthropic.");
  });

  it("picks the first available model (custom first), and refuses unknown or unauthenticated ones", async () => {
    const dirs = await sessionDirs();
    const { runtime } = await fauxRuntime();
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    expect(session.settings().model).toMatchObject({ provider: "faux", id: "faux-1", available: true });

    const bare = await new RuntimeCache().get({ orgId: "o", revision: "1", providers: [], builtinKeys: {} });
    expect(bare.listModels().some((m) => m.available)).toBe(false);
    await expect(openSession({ runtime: bare, ...dirs })).rejects.toMatchObject({ code: "no_model" });
    await expect(
      openSession({ runtime: bare, ...dirs, model: { provider: "nope", modelId: "x" } }),
    ).rejects.toMatchObject({ code: "unknown_model" });
    const anthropic = bare.listModels().find((m) => m.provider === "anthropic");
    await expect(
      openSession({ runtime: bare, ...dirs, model: { provider: "anthropic", modelId: anthropic?.id ?? "" } }),
    ).rejects.toSatisfy((e) => e instanceof PiRuntimeError && e.code === "auth");
  });

  it("exposes settings, clamps thinking levels and switches models", async () => {
    const dirs = await sessionDirs();
    const { runtime, faux } = await fauxRuntime({ reasoning: true });
    faux.setResponses([fauxAssistantMessage("ok")]);
    const session = await openSession({ runtime, ...dirs, thinkingLevel: "high" });
    onCleanup(() => session.dispose());
    const s = session.settings();
    expect(s).toMatchObject({ thinkingLevel: "high", supportsThinking: true, isStreaming: false });
    expect(s.availableThinkingLevels).toEqual(["off", "minimal", "low", "medium", "high"]);
    expect(session.setThinkingLevel("xhigh")).toBe("high"); // faux declares no xhigh mapping: clamped
    expect(session.setThinkingLevel("low")).toBe("low");
    await expect(session.setModel("faux", "missing")).rejects.toMatchObject({ code: "unknown_model" });
    const anthropic = runtime.listModels().find((m) => m.provider === "anthropic");
    await expect(session.setModel("anthropic", anthropic?.id ?? "")).rejects.toMatchObject({ code: "auth" });
    await session.setModel("faux", "faux-1");
    expect(session.settings().model?.id).toBe("faux-1");
    expect(session.piSessionId).toMatch(/^[0-9a-f-]{36}$/);
  });
});
