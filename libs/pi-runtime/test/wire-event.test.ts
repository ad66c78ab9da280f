// toWireEvent: the lean form of pi's message_update events.
import { describe, expect, it } from "vitest";
import { toWireEvent } from "../src/index.ts";

const partial = {
  role: "assistant",
  content: [
    { type: "text", text: "hi" },
    { type: "toolCall", id: "call-1", name: "bash", arguments: {} },
  ],
};

describe("toWireEvent", () => {
  it("drops message and partial from message_update", () => {
    const wire = toWireEvent({
      type: "message_update",
      message: partial,
      assistantMessageEvent: { type: "text_delta", contentIndex: 0, delta: "hi", partial },
    });
    expect(wire).toEqual({
      type: "message_update",
      assistantMessageEvent: { type: "text_delta", contentIndex: 0, delta: "hi" },
    });
  });

  it("adds id and toolName on toolcall_start", () => {
    const wire = toWireEvent({
      type: "message_update",
      message: partial,
      assistantMessageEvent: { type: "toolcall_start", contentIndex: 1, partial },
    });
    expect(wire.assistantMessageEvent).toEqual({
      type: "toolcall_start",
      contentIndex: 1,
      id: "call-1",
      toolName: "bash",
    });
  });

  it("passes other events through unchanged and rejects non-events", () => {
    const event = {
      type: "tool_execution_start",
      toolCallId: "c",
      toolName: "bash",
      args: { command: "ls" },
    };
    expect(toWireEvent(event)).toBe(event);
    expect(() => toWireEvent(null)).toThrow(TypeError);
    expect(() => toWireEvent({ type: 1 })).toThrow(TypeError);
  });
});
