// Helpers for reading pi-fleet wire events off an SSE connection (testkit `openSse`).

import { RUN_END_EVENT_TYPES } from "@pi-fleet/contracts";
import type { SseConnection, SseEvent } from "@pi-fleet/testkit";

/** A wire event as JSON: `type` always, `runId` on fleet events, anything else per type. */
export interface WireEvent {
  type: string;
  runId?: string;
  [field: string]: unknown;
}

/** The wire event carried by an SSE event; throws if its data is not a JSON object with a `type`. */
export function wire(e: SseEvent): WireEvent {
  const j = e.json;
  if (typeof j !== "object" || j === null || typeof (j as { type?: unknown }).type !== "string") {
    throw new Error(`SSE data is not a wire event: ${e.data.slice(0, 200)}`);
  }
  return j as WireEvent;
}

/** `type` of an SSE event's wire event, or undefined when it is not one. */
export function typeOf(e: SseEvent): string | undefined {
  const j = e.json;
  if (typeof j !== "object" || j === null) return undefined;
  const t = (j as { type?: unknown }).type;
  return typeof t === "string" ? t : undefined;
}

/** Predicate: the event ends run `runId`. */
export function endsRun(runId: string): (e: SseEvent) => boolean {
  return (e) => {
    const t = typeOf(e);
    return t !== undefined && RUN_END_EVENT_TYPES.has(t) && (e.json as WireEvent).runId === runId;
  };
}

/** Predicate: event of `type` for `runId` (any run when omitted). */
export function isEvent(type: string, runId?: string): (e: SseEvent) => boolean {
  return (e) => typeOf(e) === type && (runId === undefined || (e.json as WireEvent).runId === runId);
}

/**
 * Waits until `pred` matches an event of `sse` and returns all events up to and including the
 * first match.
 */
export async function collectUntil(
  sse: SseConnection,
  pred: (e: SseEvent) => boolean,
  timeoutMs = 30_000,
): Promise<SseEvent[]> {
  const hit = await sse.waitFor(pred, timeoutMs);
  return sse.events.slice(0, sse.events.indexOf(hit) + 1);
}
