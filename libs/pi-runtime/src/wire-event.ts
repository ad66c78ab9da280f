// The lean wire form of pi's session events. Raw message_update events carry the whole partial
// message twice, which makes serializing a stream O(n²) (hazard H19); this mirrors pi's own
// (non-exported) toJsonEvent of its JSON/RPC modes, minus the per-update `usage`.
import type { AgentMessage } from "@earendil-works/pi-agent-core";
import type { WireEvent } from "@pi-fleet/contracts";
import { publicEventMessage } from "./sanitize.ts";

/**
 * Converts one pi event (an AgentSessionEvent from `session.subscribe`) to its wire form:
 * `message_update` becomes `{type, assistantMessageEvent}` with `partial` removed from the inner
 * event, and `id` + `toolName` added on `toolcall_start` (from `partial.content[contentIndex]`).
 * Messages lose their server paths as everywhere the fleet shows them (sanitize.ts): the
 * `message` of `message_start` / `message_end` and the `messages` of `agent_end`. Every other
 * event is returned unchanged (pi's events are plain JSON data). Throws TypeError if `event` is
 * not an object with a string `type`.
 */
export function toWireEvent(event: unknown): WireEvent {
  if (!isRecord(event) || typeof event.type !== "string") {
    throw new TypeError("not a pi event: expected an object with a string type");
  }
  if ((event.type === "message_start" || event.type === "message_end") && isRecord(event.message)) {
    const message = publicEventMessage(event.message as unknown as AgentMessage);
    return (message === event.message ? event : { ...event, message }) as WireEvent;
  }
  if (event.type === "agent_end" && Array.isArray(event.messages)) {
    return {
      ...event,
      messages: (event.messages as AgentMessage[]).map(publicEventMessage),
    } as unknown as WireEvent;
  }
  if (event.type !== "message_update") return event as WireEvent;
  const inner = event.assistantMessageEvent;
  if (!isRecord(inner)) return { type: "message_update" };
  const { partial, ...lean } = inner;
  if (lean.type === "toolcall_start" && isRecord(partial) && Array.isArray(partial.content)) {
    const index = typeof lean.contentIndex === "number" ? lean.contentIndex : -1;
    const block: unknown = partial.content[index];
    if (isRecord(block) && block.type === "toolCall") {
      lean.id = block.id;
      lean.toolName = block.name;
    }
  }
  return { type: "message_update", assistantMessageEvent: lean };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
