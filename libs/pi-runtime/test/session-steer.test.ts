// steer() and followUp() into a running agent (faux provider): delivery inside the same run,
// pi's queue_update events, and the "idle" refusal outside a run.
import { fauxAssistantMessage, fauxToolCall } from "@earendil-works/pi-ai";
import { describe, expect, it } from "vitest";
import { openSession, PiRuntimeError } from "../src/index.ts";
import { fauxRuntime, onCleanup, recordingSink, sessionDirs } from "./helpers.ts";

/** The text of every user message in a request context, in order. */
function userTexts(messages: readonly { role: string; content?: unknown }[]): string[] {
  return messages
    .filter((m) => m.role === "user")
    .map((m) =>
      typeof m.content === "string"
        ? m.content
        : (m.content as { type: string; text?: string }[])
            .filter((c) => c.type === "text")
            .map((c) => c.text)
            .join(""),
    );
}

describe("steer / followUp", () => {
  it("delivers a steer sent during a tool call to the next request of the same run", async () => {
    const dirs = await sessionDirs();
    const { runtime, faux } = await fauxRuntime();
    const seen: string[][] = [];
    faux.setResponses([
      fauxAssistantMessage(fauxToolCall("bash", { command: "sleep 0.3" }), { stopReason: "toolUse" }),
      (context) => {
        seen.push(userTexts(context.messages));
        return fauxAssistantMessage("steered");
      },
    ]);
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    const { events, sink, waitFor } = recordingSink();

    const running = session.run("start", {}, sink);
    await waitFor((e) => e.type === "tool_execution_start");
    await session.steer("change of plans");
    const outcome = await running;

    expect(outcome.status).toBe("finished");
    expect(seen).toEqual([["start", "change of plans"]]);
    expect(events.filter((e) => e.type === "queue_update")).toEqual([
      { type: "queue_update", steering: ["change of plans"], followUp: [] },
      { type: "queue_update", steering: [], followUp: [] },
    ]);
    // delivered after the tool result, before the final answer
    expect(session.messages().map((m) => (m as { role: string }).role)).toEqual([
      "user",
      "assistant",
      "toolResult",
      "user",
      "assistant",
    ]);
  });

  it("delivers a follow-up (with an image) after the answer, within the same run", async () => {
    const dirs = await sessionDirs();
    const { runtime, faux } = await fauxRuntime({ tokensPerSecond: 100 });
    let secondContext: unknown[] = [];
    faux.setResponses([
      fauxAssistantMessage("word ".repeat(30)),
      (context) => {
        secondContext = context.messages;
        return fauxAssistantMessage("followed up");
      },
    ]);
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    const { events, sink, waitFor } = recordingSink();

    const running = session.run("first", {}, sink);
    await waitFor((e) => e.type === "message_update");
    await session.followUp("and then", [{ data: "aGVsbG8=", mimeType: "image/png" }]);
    expect((await running).status).toBe("finished");

    expect(events.some((e) => e.type === "queue_update" && (e.followUp as string[])[0] === "and then")).toBe(
      true,
    );
    expect(events.filter((e) => e.type === "agent_start")).toHaveLength(1);
    expect(userTexts(secondContext as { role: string }[])).toEqual(["first", "and then"]);
    expect(JSON.stringify(secondContext.at(-1))).toContain("image/png");
    expect(session.settings().isStreaming).toBe(false);
  });

  it("accepts input while run() is still in pi's preflight", async () => {
    const dirs = await sessionDirs();
    const { runtime, faux } = await fauxRuntime();
    const seen: string[][] = [];
    faux.setResponses([
      (context) => {
        seen.push(userTexts(context.messages));
        return fauxAssistantMessage("ok");
      },
    ]);
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    const running = session.run("prompt", {}, () => {});
    await session.steer("early steer"); // synchronously after run(): pi is not streaming yet
    expect((await running).status).toBe("finished");
    expect(seen).toEqual([["prompt", "early steer"]]);
  });

  it("throws PiRuntimeError idle outside a run", async () => {
    const dirs = await sessionDirs();
    const { runtime, faux } = await fauxRuntime();
    faux.setResponses([fauxAssistantMessage("ok")]);
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    await expect(session.steer("hello")).rejects.toSatisfy(
      (e) => e instanceof PiRuntimeError && e.code === "idle",
    );
    await session.run("hi", {}, () => {});
    await expect(session.followUp("later")).rejects.toMatchObject({ code: "idle" });
    expect(await session.command({ type: "get_state" })).toMatchObject({
      data: { pendingMessageCount: 0 },
    });
  });
});
