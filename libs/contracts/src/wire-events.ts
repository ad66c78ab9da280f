/**
 * Wire events: what crosses the session stream (Redis) and reaches clients over SSE.
 * A wire event is a pi `AgentSessionEvent` in lean form (see `@pi-fleet/pi-runtime` toWireEvent),
 * an `extension_ui_request` / `extension_error`, or one of the fleet events below.
 * Fleet events always carry `runId` except `stream_reset` / `stream_lagging` / `stream_ended`.
 */

/** Any event on the wire: `type` plus event-specific fields (pi's shapes are forwarded as-is). */
export interface WireEvent {
  type: string;
  [key: string]: unknown;
}

/** Run states (API.md "Runs"). */
export type RunStatus =
  | "queued"
  | "running"
  | "finished"
  | "failed"
  | "aborted"
  | "interrupted"
  | "cancelled";

/** Terminal run states: a run in one of these never changes again. */
export const TERMINAL_RUN_STATUSES: readonly RunStatus[] = [
  "finished",
  "failed",
  "aborted",
  "interrupted",
  "cancelled",
];

/** Token usage and cost of a run, summed over its assistant messages (source: pi-ai `Usage`). */
export interface RunUsage {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
  totalTokens: number;
  /** Cost in USD as computed by pi from the model's price table. */
  cost: number;
}

/** The fleet event types that bracket each run, in the order they can appear. */
export type FleetEventType =
  | "run_queued"
  | "run_started"
  | "run_finished"
  | "run_failed"
  | "run_aborted"
  | "run_interrupted"
  | "run_cancelled"
  | "stream_reset"
  | "stream_lagging"
  | "stream_ended";

/** Maps a terminal run status to the fleet event that reports it. */
export function terminalEventType(status: RunStatus): FleetEventType | undefined {
  switch (status) {
    case "finished":
      return "run_finished";
    case "failed":
      return "run_failed";
    case "aborted":
      return "run_aborted";
    case "interrupted":
      return "run_interrupted";
    case "cancelled":
      return "run_cancelled";
    default:
      return undefined;
  }
}

/** The fleet events that end a run: one per terminal status (`terminalEventType`). */
export const RUN_END_EVENT_TYPES: ReadonlySet<string> = new Set(
  TERMINAL_RUN_STATUSES.flatMap((status) => terminalEventType(status) ?? []),
);
