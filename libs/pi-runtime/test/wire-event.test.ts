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

  it("shows messages without server paths: a blank system message, no bash overflow path", () => {
    const system = {
      role: "system",
      content: "cwd: /srv/ws/acme/projects/web, docs: /opt/pi/docs",
      timestamp: 1,
    };
    const user = { role: "user", content: "hi", timestamp: 2 };
    const bash = {
      role: "bashExecution",
      command: "seq 9",
      output: "…",
      fullOutputPath: "/tmp/pi-bash-1.log",
      timestamp: 3,
    };
    for (const type of ["message_start", "message_end"]) {
      expect(toWireEvent({ type, message: system })).toEqual({
        type,
        message: { role: "system", content: "", timestamp: 1 },
      });
      const plain = { type, message: user };
      expect(toWireEvent(plain)).toBe(plain);
      expect(JSON.stringify(toWireEvent({ type, message: bash }))).not.toContain("pi-bash-1.log");
    }
    const end = toWireEvent({ type: "agent_end", messages: [system, user, bash] });
    expect(JSON.stringify(end)).not.toMatch(/\/srv\/ws|\/opt\/pi|pi-bash-1/);
    expect((end as unknown as { messages: unknown[] }).messages).toHaveLength(3);
  });
});
