// PiSession.command(): pi's RPC command semantics and data shapes (faux provider), minus server
// paths, with the fleet's busy/invalid/unsupported codes.
import { fauxAssistantMessage } from "@earendil-works/pi-ai";
import { describe, expect, it } from "vitest";
import { openSession, type PiSession } from "../src/index.ts";
import { fauxRuntime, onCleanup, recordingSink, sessionDirs } from "./helpers.ts";

async function openFaux(options: Parameters<typeof fauxRuntime>[0] = {}) {
  const dirs = await sessionDirs();
  const { runtime, faux } = await fauxRuntime(options);
  const session = await openSession({ runtime, ...dirs });
  onCleanup(() => session.dispose());
  return { dirs, runtime, faux, session };
}

/** The data of a successful command (fails the test otherwise). */
async function data(session: PiSession, request: { type: string; [k: string]: unknown }): Promise<unknown> {
  const result = await session.command(request);
  expect(result).toMatchObject({ success: true });
  return (result as { data?: unknown }).data;
}

describe("command: state", () => {
  it("get_state has pi's fields without sessionFile, a ModelRow and the fleet's message count", async () => {
    const { dirs, faux, session } = await openFaux();
    faux.setResponses([fauxAssistantMessage("done")]);
    await session.run("hi", {}, () => {});
    const state = (await data(session, { type: "get_state" })) as Record<string, unknown>;
    expect(Object.keys(state).sort()).toEqual([
      "autoCompactionEnabled",
      "followUpMode",
      "isCompacting",
      "isStreaming",
      "messageCount",
      "model",
      "pendingMessageCount",
      "sessionId",
      "steeringMode",
      "thinkingLevel",
    ]);
    expect(state).toMatchObject({
      model: { provider: "faux", id: "faux-1", available: true, api: expect.any(String) },
      thinkingLevel: "off",
      isStreaming: false,
      isCompacting: false,
      steeringMode: "one-at-a-time",
      followUpMode: "one-at-a-time",
      // The fleet id (the session file is s1.jsonl), never pi's header id.
      sessionId: "s1",
      autoCompactionEnabled: true,
      messageCount: 2,
      pendingMessageCount: 0,
    });
    expect(session.sessionId).toBe("s1");
    expect(JSON.stringify(state)).not.toContain(session.piSessionId);
    expect(JSON.stringify(state)).not.toContain(dirs.root);
  });

  it("names the session by the fleet id of the spec in get_state and get_session_stats", async () => {
    const dirs = await sessionDirs();
    const { runtime, faux } = await fauxRuntime();
    const fleetId = "0b7e2c5a-4f1d-4a8e-9c3b-2d6f8e1a7b90";
    const session = await openSession({ runtime, ...dirs, sessionId: fleetId });
    onCleanup(() => session.dispose());
    faux.setResponses([fauxAssistantMessage("done")]);
    await session.run("hi", {}, () => {});
    expect(session.sessionId).toBe(fleetId);
    expect(session.piSessionId).not.toBe(fleetId);
    const state = (await data(session, { type: "get_state" })) as Record<string, unknown>;
    const stats = (await data(session, { type: "get_session_stats" })) as Record<string, unknown>;
    expect(state.sessionId).toBe(fleetId);
    expect(stats.sessionId).toBe(fleetId);
    expect(JSON.stringify([state, stats])).not.toContain(session.piSessionId);
  });

  it("get_messages, get_session_stats and get_last_assistant_text", async () => {
    const { dirs, faux, session } = await openFaux();
    expect(await data(session, { type: "get_last_assistant_text" })).toEqual({ text: null });
    faux.setResponses([fauxAssistantMessage("done")]);
    await session.run("hi", {}, () => {});

    const { messages } = (await data(session, { type: "get_messages" })) as { messages: { role: string }[] };
    expect(messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(messages).toEqual(session.messages());
    expect(JSON.stringify(messages)).not.toContain(dirs.root);

    const stats = (await data(session, { type: "get_session_stats" })) as Record<string, unknown>;
    expect(stats).not.toHaveProperty("sessionFile");
    expect(stats).toMatchObject({
      sessionId: "s1",
      userMessages: 1,
      assistantMessages: 1,
      toolCalls: 0,
      toolResults: 0,
      tokens: { input: expect.any(Number), output: expect.any(Number), total: expect.any(Number) },
      cost: expect.any(Number),
    });
    expect(JSON.stringify(stats)).not.toContain(dirs.root);
    expect(JSON.stringify(stats)).not.toContain(session.piSessionId);

    expect(await data(session, { type: "get_last_assistant_text" })).toEqual({ text: "done" });
    expect(await data(session, { type: "get_commands" })).toEqual({ commands: [] });
    expect(await data(session, { type: "clear_queue" })).toEqual({ steering: [], followUp: [] });
  });

  it("set_session_name trims, persists via pi and shows in get_state; blank names are invalid", async () => {
    const { dirs, faux, session } = await openFaux();
    faux.setResponses([fauxAssistantMessage("done")]);
    await session.run("hi", {}, () => {});
    expect(await session.command({ type: "set_session_name", name: "  my session " })).toEqual({
      success: true,
    });
    expect(await data(session, { type: "get_state" })).toMatchObject({ sessionName: "my session" });
    const { readFileSync } = await import("node:fs");
    expect(readFileSync(dirs.sessionFile, "utf8")).toContain('"type":"session_info"');
    expect(await session.command({ type: "set_session_name", name: "   " })).toEqual({
      success: false,
      code: "invalid",
      error: "Session name cannot be empty",
    });
    expect(await session.command({ type: "set_session_name" })).toMatchObject({
      success: false,
      code: "invalid",
    });
  });

  it("get_entries and get_tree keep the tree but not the system prompt", async () => {
    const { dirs, faux, session } = await openFaux();
    faux.setResponses([fauxAssistantMessage("done")]);
    await session.run("hi", {}, () => {});
    const { entries, leafId } = (await data(session, { type: "get_entries" })) as {
      entries: { id: string; type: string; message?: { role: string; content?: unknown } }[];
      leafId: string;
    };
    expect(entries.map((e) => e.message?.role ?? e.type)).toEqual([
      "model_change",
      "thinking_level_change",
      "system",
      "user",
      "assistant",
    ]);
    expect(entries[2]?.message).toEqual({ role: "system", content: "", timestamp: expect.any(Number) });
    expect(leafId).toBe(entries.at(-1)?.id);
    const since = (await data(session, { type: "get_entries", since: entries[2]?.id })) as typeof entries;
    expect(since).toMatchObject({
      entries: [{ message: { role: "user" } }, { message: { role: "assistant" } }],
    });
    expect(await session.command({ type: "get_entries", since: "nope" })).toEqual({
      success: false,
      code: "invalid",
      error: "Entry not found: nope",
    });

    const { tree } = (await data(session, { type: "get_tree" })) as { tree: { children: unknown[] }[] };
    expect(tree).toHaveLength(1);
    const json = JSON.stringify(tree);
    expect(json).not.toContain(dirs.root);
    expect(json).toContain('"role":"assistant"');
    expect(await data(session, { type: "get_fork_messages" })).toEqual({
      messages: [{ entryId: entries[3]?.id, text: "hi" }],
    });
  });
});

describe("command: models and thinking", () => {
  it("clamps set_thinking_level on a non-reasoning model and validates the level", async () => {
    const { session } = await openFaux();
    expect(await session.command({ type: "set_thinking_level", level: "high" })).toEqual({ success: true });
    expect(await data(session, { type: "get_state" })).toMatchObject({ thinkingLevel: "off" });
    expect(await data(session, { type: "get_available_thinking_levels" })).toEqual({ levels: ["off"] });
    expect(await data(session, { type: "cycle_thinking_level" })).toBeNull();
    expect(await session.command({ type: "set_thinking_level", level: "extreme" })).toMatchObject({
      success: false,
      code: "invalid",
    });
  });

  it("cycles thinking levels on a reasoning model", async () => {
    const { session } = await openFaux({ reasoning: true });
    expect(await data(session, { type: "set_thinking_level", level: "max" })).toBeUndefined();
    expect(await data(session, { type: "get_state" })).toMatchObject({ thinkingLevel: "high" });
    expect(await data(session, { type: "cycle_thinking_level" })).toEqual({ level: "off" });
  });

  it("lists, sets and cycles models as ModelRows", async () => {
    const { runtime, session } = await openFaux({ modelIds: ["faux-1", "faux-2"] });
    const { models } = (await data(session, { type: "get_available_models" })) as {
      models: { id: string }[];
    };
    expect(models).toEqual(runtime.listModels().filter((m) => m.available));
    expect(models.map((m) => m.id)).toEqual(["faux-1", "faux-2"]);

    expect(await data(session, { type: "set_model", provider: "faux", modelId: "faux-2" })).toEqual(
      runtime.findModel("faux", "faux-2"),
    );
    expect(session.settings().model?.id).toBe("faux-2");
    expect(await data(session, { type: "cycle_model" })).toEqual({
      model: runtime.findModel("faux", "faux-1"),
      thinkingLevel: "off",
      isScoped: false,
    });
    expect(await session.command({ type: "set_model", provider: "faux", modelId: "nope" })).toEqual({
      success: false,
      code: "invalid",
      error: "Model not found: faux/nope",
    });
    // Empty names are looked up like any other, as pi does (its text, no argument error).
    expect(await session.command({ type: "set_model", provider: "", modelId: "x" })).toEqual({
      success: false,
      code: "invalid",
      error: "Model not found: /x",
    });
    const anthropic = runtime.listModels().find((m) => m.provider === "anthropic");
    expect(
      await session.command({ type: "set_model", provider: "anthropic", modelId: anthropic?.id }),
    ).toMatchObject({ success: false, code: "invalid" }); // listed but not available
    expect(await session.command({ type: "set_model", provider: "faux" })).toMatchObject({ code: "invalid" });
  });

  it("answers cycle_model with null when only one model is available", async () => {
    const { session } = await openFaux();
    expect(await session.command({ type: "cycle_model" })).toEqual({ success: true, data: null });
  });
});

describe("command: compaction, busy and unknown commands", () => {
  it("refuses compact, set_model and cycle_model during a run without disturbing it", async () => {
    const { faux, session } = await openFaux({ tokensPerSecond: 100, modelIds: ["faux-1", "faux-2"] });
    faux.setResponses([fauxAssistantMessage("word ".repeat(30))]);
    const { sink, waitFor } = recordingSink();
    const running = session.run("talk", {}, sink);
    await waitFor((e) => e.type === "message_update");
    for (const request of [
      { type: "compact" },
      { type: "set_model", provider: "faux", modelId: "faux-2" },
      { type: "cycle_model" },
    ]) {
      expect(await session.command(request)).toEqual({
        success: false,
        code: "busy",
        error: `${request.type} is not allowed while a run is active`,
      });
    }
    expect(await data(session, { type: "get_state" })).toMatchObject({ isStreaming: true });
    const outcome = await running;
    expect(outcome).toMatchObject({ status: "finished", stopReason: "stop" });
    expect(session.settings().model?.id).toBe("faux-1");
  });

  it("passes pi's error when the session is too small to compact", async () => {
    const { faux, session } = await openFaux();
    faux.setResponses([fauxAssistantMessage("done")]);
    await session.run("hi", {}, () => {});
    expect(await session.command({ type: "compact", customInstructions: "short" })).toEqual({
      success: false,
      error: "Nothing to compact (session too small)",
    });
    expect(await session.command({ type: "compact", customInstructions: 3 })).toMatchObject({
      code: "invalid",
    });
  });

  it("answers unknown, unsupported and malformed commands", async () => {
    const { session } = await openFaux();
    expect(await session.command({ type: "frobnicate" })).toEqual({
      success: false,
      code: "unsupported",
      error: "Unknown command: frobnicate",
    });
    expect(await session.command({ type: "toString" })).toMatchObject({ error: "Unknown command: toString" });
    // Session creation needs the fleet's SessionFiles (session-fork.test.ts); switching never works.
    for (const type of ["fork", "clone", "new_session", "switch_session"]) {
      expect(await session.command({ type, entryId: "e1" })).toMatchObject({
        success: false,
        code: "unsupported",
      });
    }
    expect(await session.command({ type: "prompt", message: "hi" })).toMatchObject({ code: "unsupported" });
    expect(await session.command({ type: 42 } as unknown as { type: string })).toMatchObject({
      success: false,
      code: "invalid",
    });
    expect(await session.command({ type: "set_steering_mode", mode: "sometimes" })).toEqual({
      success: false,
      code: "invalid",
      error: 'set_steering_mode: "mode" must be one of all, one-at-a-time',
    });
    expect(await session.command({ type: "set_auto_retry", enabled: "yes" })).toMatchObject({
      code: "invalid",
    });
    await session.dispose();
    expect(await session.command({ type: "get_state" })).toEqual({
      success: false,
      error: "PiSession is disposed",
    });
  });
});
