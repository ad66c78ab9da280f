/**
 * Fleet events: the wire events pi-fleet itself emits (hand-authored, they are ours), next to pi's
 * (generated, see `pi-schemas.ts`). Session streams carry the run lifecycle and the stream
 * control events; the project activity stream (`GET /v1/projects/{projectId}/events`) carries
 * session and run summaries. Objects are open: clients must ignore fields they do not know.
 */
import { Type } from "typebox";
import { StringEnum } from "../api/common.ts";
import { RunUsageSchema } from "../api/sessions.ts";
import type { RunStatus } from "../wire-events.ts";

const RUN_STATUSES = [
  "queued",
  "running",
  "finished",
  "failed",
  "aborted",
  "interrupted",
  "cancelled",
] as const satisfies readonly RunStatus[];

const runId = Type.String({ description: "The run this event belongs to." });
const sessionId = Type.String({ description: "The run's session." });

/** `run_queued`: a prompt became a run (appended atomically with the run record). */
export const RunQueuedEvent = Type.Object(
  {
    type: Type.Literal("run_queued"),
    runId,
    sessionId,
    seq: Type.Integer({ minimum: 1, description: "The run's sequence number in its session." }),
    position: Type.Integer({ minimum: 0, description: "Runs of the session ahead of this one." }),
    queuedAt: Type.Number({ description: "Epoch milliseconds." }),
  },
  { description: "A prompt was accepted and queued as a run." },
);

/** `run_started`: a worker started the run. */
export const RunStartedEvent = Type.Object(
  {
    type: Type.Literal("run_started"),
    runId,
    sessionId,
    workerId: Type.String({ description: "The worker running it." }),
    epoch: Type.Integer({ description: "Epoch of the project lease it runs under." }),
  },
  { description: "A worker started the run; pi's events follow." },
);

/** `run_finished`: pi completed the run. */
export const RunFinishedEvent = Type.Object(
  {
    type: Type.Literal("run_finished"),
    runId,
    sessionId,
    usage: RunUsageSchema,
    stopReason: Type.Optional(Type.String({ description: "pi's stopReason of the last assistant message." })),
  },
  { description: "The run completed." },
);

/** `run_failed`: the run could not complete (provider error, preflight failure, …). */
export const RunFailedEvent = Type.Object(
  {
    type: Type.Literal("run_failed"),
    runId,
    sessionId,
    error: Type.String(),
    usage: Type.Optional(RunUsageSchema),
  },
  { description: "The run failed." },
);

/** `run_aborted`: a client aborted the run, or deleted its session. */
export const RunAbortedEvent = Type.Object(
  { type: Type.Literal("run_aborted"), runId, sessionId, usage: Type.Optional(RunUsageSchema) },
  {
    description:
      "The run was aborted by a client, or by the deletion of its session (then only the project's activity stream carries it).",
  },
);

/** `run_interrupted`: the fleet stopped the run (worker lost, lease lost, shutdown, org disabled). */
export const RunInterruptedEvent = Type.Object(
  {
    type: Type.Literal("run_interrupted"),
    runId,
    sessionId,
    reason: Type.String({
      description: "Why, e.g. `worker_lost`, `lease_lost`, `shutdown`, `org_disabled`.",
    }),
    usage: Type.Optional(RunUsageSchema),
  },
  { description: "The run was interrupted by the fleet; it is not retried." },
);

/** `run_cancelled`: a queued run was cancelled before it started. */
export const RunCancelledEvent = Type.Object(
  {
    type: Type.Literal("run_cancelled"),
    runId,
    sessionId,
    reason: Type.Optional(
      Type.String({
        description:
          "Set when the fleet cancelled it: `org_disabled` (an operator disabled the org). Absent for a client's `abort` with `cancelQueued`.",
      }),
    ),
  },
  { description: "A queued run was cancelled (`abort` with `cancelQueued`, or its org disabled)." },
);

/** `stream_reset`: the resume point is gone; the stream continues from `firstOffset`. */
export const StreamResetEvent = Type.Object(
  {
    type: Type.Literal("stream_reset"),
    reason: StringEnum(["trimmed", "lost"], {
      description: "`trimmed`: the offset fell out of retention; `lost`: the stream was recreated.",
    }),
    firstOffset: Type.String({ description: "Offset of the first entry that follows." }),
  },
  { description: "Sent instead of a silent gap when a subscription cannot resume where asked." },
);

/** `stream_lagging`: the client reads too slowly; the server closes the stream after this event. */
export const StreamLaggingEvent = Type.Object(
  {
    type: Type.Literal("stream_lagging"),
    lastOffset: Type.Optional(
      Type.Union([Type.String(), Type.Null()], {
        description: "Offset of the last entry sent (resume from it), null when none was (SSE only).",
      }),
    ),
  },
  { description: "Last event before the server cuts a client that lags too far behind." },
);

/** `stream_ended`: the stream is gone for good; the server closes the subscription after this event. */
export const StreamEndedEvent = Type.Object(
  {
    type: Type.Literal("stream_ended"),
    reason: StringEnum(["session_deleted", "project_deleted"], {
      description: "The session (or its whole project) was deleted: there is nothing to resume.",
    }),
  },
  {
    description:
      "Last event of a stream whose session or project was deleted (no offset); do not reconnect: the stream answers 404 from now on.",
  },
);

/** Every event pi-fleet adds to a session stream. */
export const FLEET_EVENTS = {
  RunQueuedEvent,
  RunStartedEvent,
  RunFinishedEvent,
  RunFailedEvent,
  RunAbortedEvent,
  RunInterruptedEvent,
  RunCancelledEvent,
  StreamResetEvent,
  StreamLaggingEvent,
  StreamEndedEvent,
} as const;

/** `session_created` on the project activity stream. */
export const SessionCreatedActivity = Type.Object(
  { type: Type.Literal("session_created"), sessionId, name: Type.Optional(Type.String()) },
  { description: "A session was created." },
);

/** `session_deleted` on the project activity stream. */
export const SessionDeletedActivity = Type.Object(
  { type: Type.Literal("session_deleted"), sessionId },
  { description: "A session was deleted." },
);

/** A run summary on the project activity stream (the session stream has the full event). */
export const RunActivity = Type.Object(
  {
    type: StringEnum([
      "run_queued",
      "run_started",
      "run_finished",
      "run_failed",
      "run_aborted",
      "run_interrupted",
      "run_cancelled",
    ]),
    runId,
    sessionId,
    status: Type.Optional(StringEnum(RUN_STATUSES, { description: "The run's new state." })),
    seq: Type.Optional(Type.Integer({ minimum: 1 })),
    position: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { description: "A run of the project changed state." },
);

/** Every event of a project activity stream (plus `stream_reset` / `stream_lagging` / `stream_ended`). */
export const ACTIVITY_EVENTS = { SessionCreatedActivity, SessionDeletedActivity, RunActivity } as const;
