/** Session and run bodies (seed `SessionRow`, `PromptRequest`, …, plus API.md additions). */
import { Type } from "typebox";
import { UI_REQUEST_ID_PATTERN } from "../ids.ts";
import { AgentMessageSchema, ExtensionUiRequestSchema } from "../wire/pi-schemas.ts";
import { ProjectId, RunId, SessionId, StringEnum, ThinkingLevelSchema } from "./common.ts";
import { AgentModelRow } from "./providers.ts";

/**
 * Longest session name (characters): at creation, and after trimming for `set_session_name` (the
 * registry lists it, and forks and clones carry it into their names).
 */
export const SESSION_NAME_MAX_LENGTH = 200;

export const CreateSessionRequest = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: SESSION_NAME_MAX_LENGTH })),
    provider: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    modelId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    thinkingLevel: Type.Optional(ThinkingLevelSchema),
  },
  { additionalProperties: false },
);

export const CreateSessionResponse = Type.Object({
  id: Type.String(),
  createdAt: Type.String(),
  name: Type.Optional(Type.String()),
});

export const SessionRow = Type.Object({
  id: Type.String(),
  createdAt: Type.String(),
  firstMessage: Type.String(),
  messageCount: Type.Integer({ minimum: 0 }),
  name: Type.Optional(Type.String()),
});

export const ListSessionsResponse = Type.Object({ sessions: Type.Array(SessionRow) });

export const SessionMessagesResponse = Type.Object({
  id: Type.String(),
  messages: Type.Array(AgentMessageSchema, {
    description:
      "pi AgentMessage objects, oldest first, forwarded as pi wrote them (schema generated from pi's typings).",
  }),
});

export const SessionModelSettingsResponse = Type.Object({
  model: Type.Union([AgentModelRow, Type.Null()]),
  thinkingLevel: ThinkingLevelSchema,
  availableThinkingLevels: Type.Array(ThinkingLevelSchema),
  supportsThinking: Type.Boolean(),
  isStreaming: Type.Boolean(),
});

export const PatchSessionSettingsRequest = Type.Object(
  {
    provider: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    modelId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    thinkingLevel: Type.Optional(ThinkingLevelSchema),
  },
  { additionalProperties: false },
);

/** Image types accepted on prompt, steer and follow-up (what pi's providers take inline). */
export const IMAGE_MIME_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"] as const;

/**
 * One image of a prompt, steer or follow-up: standard base64 (RFC 4648 §4, padded, no line
 * breaks or whitespace) of at most `PI_FLEET_MAX_IMAGE_BYTES` decoded bytes. The optional
 * `type: "image"` makes pi's own `ImageContent` objects acceptable as they are. Bad base64 answers
 * 400 `PF_ERR_REQUEST_INVALID`; a larger image 413 `PF_ERR_REQUEST_TOO_LARGE` (checked in the route).
 */
export const PromptImage = Type.Object(
  {
    type: Type.Optional(Type.Literal("image")),
    data: Type.String({ minLength: 1, description: "Base64 of the image bytes (padded, no whitespace)." }),
    mimeType: StringEnum(IMAGE_MIME_TYPES),
  },
  { additionalProperties: false },
);

const PromptImages = Type.Array(PromptImage, {
  description:
    "Images sent with the text, as pi image content. At most `PI_FLEET_MAX_IMAGES` (413 beyond); " +
    "a model without image input sees a placeholder instead (pi's behaviour).",
});

/**
 * `POST …/prompt` body. Text length (`PI_FLEET_MAX_PROMPT_CHARS`) and image limits are enforced
 * from config in the route (413).
 */
export const PromptRequest = Type.Object(
  {
    text: Type.String({ minLength: 1 }),
    images: Type.Optional(PromptImages),
    streamingBehavior: Type.Optional(
      StringEnum(["steer", "followUp"], {
        description:
          "When the session is running a run: deliver the prompt into it as a steer or follow-up " +
          "(as pi does) instead of queueing a new run. Idle: a normal queued prompt.",
      }),
    ),
  },
  { additionalProperties: false },
);

/**
 * `POST …/prompt` answer: the run the prompt started (queued) or joined (`streamingBehavior` on a
 * running session). Seed clients read only `ok`.
 */
export const PromptResponse = Type.Object({
  ok: Type.Literal(true),
  runId: Type.String({ description: "The run queued for the prompt, or the running run it joined." }),
  offset: Type.String({
    description:
      "Stream offset just before this run (queued) or before the delivery (joined): subscribe from it to miss nothing.",
  }),
  position: Type.Integer({
    minimum: 0,
    description: "Runs of this session ahead of this one (0 when the prompt joined the running run).",
  }),
  delivered: Type.Optional(
    StringEnum(["steer", "followUp", "prompt"], {
      description:
        "Present when `streamingBehavior` was given: `steer` / `followUp` when the prompt joined the running run, `prompt` when it was queued as a new run.",
    }),
  ),
});

export const AbortResponse = Type.Object({
  ok: Type.Literal(true),
  aborted: Type.Boolean({ description: "Whether a running run was aborted (false: the session was idle)." }),
  runId: Type.Optional(Type.String()),
  cancelled: Type.Optional(
    Type.Integer({ minimum: 0, description: "Queued runs cancelled (`cancelQueued`)." }),
  ),
});

const RunStatusSchema = StringEnum([
  "queued",
  "running",
  "finished",
  "failed",
  "aborted",
  "interrupted",
  "cancelled",
]);

export const RunUsageSchema = Type.Object({
  input: Type.Number(),
  output: Type.Number(),
  cacheRead: Type.Number(),
  cacheWrite: Type.Number(),
  totalTokens: Type.Number(),
  cost: Type.Number(),
});

export const RunResponse = Type.Object({
  id: Type.String(),
  sessionId: Type.String(),
  status: RunStatusSchema,
  seq: Type.Integer(),
  createdAt: Type.String(),
  startedAt: Type.Optional(Type.String()),
  endedAt: Type.Optional(Type.String()),
  queuedOffset: Type.String(),
  startOffset: Type.Optional(Type.String()),
  endOffset: Type.Optional(Type.String()),
  usage: Type.Optional(RunUsageSchema),
  error: Type.Optional(Type.String()),
  reason: Type.Optional(Type.String()),
});

export const SessionStateResponse = Type.Object({
  status: StringEnum(["idle", "queued", "running"]),
  runId: Type.Optional(Type.String({ description: "The running run, if any." })),
  queueLength: Type.Integer({ minimum: 0, description: "Runs waiting behind the running one." }),
  model: Type.Union([AgentModelRow, Type.Null()]),
  thinkingLevel: ThinkingLevelSchema,
  lastOffset: Type.String({
    description: "Offset of the newest entry in the session stream ('0' when empty).",
  }),
});

export const RunParams = Type.Object(
  { projectId: ProjectId, id: SessionId, runId: RunId },
  { additionalProperties: false },
);

export const EventsQuery = Type.Object(
  { after: Type.Optional(Type.String({ maxLength: 64 })) },
  { additionalProperties: false },
);

/** `POST …/steer` and `…/follow_up` body (limits as for {@link PromptRequest}). */
export const DeliverRequest = Type.Object(
  { text: Type.String({ minLength: 1 }), images: Type.Optional(PromptImages) },
  { additionalProperties: false },
);

export const DeliverResponse = Type.Object({
  ok: Type.Literal(true),
  delivered: StringEnum(["steer", "followUp", "prompt"], {
    description:
      "How the message was delivered: into the running agent, or as a new prompt when the session was idle.",
  }),
  runId: Type.Optional(Type.String({ description: "The run the message joined or started." })),
  offset: Type.Optional(
    Type.String({
      description:
        "Stream offset just before the new run (prompt) or before the delivery (steer / followUp).",
    }),
  ),
  position: Type.Optional(Type.Integer({ minimum: 0 })),
});

export const AbortRequest = Type.Object(
  { cancelQueued: Type.Optional(Type.Boolean({ description: "Also cancel the session's queued runs." })) },
  { additionalProperties: false },
);

export const ExtensionUiParams = Type.Object(
  {
    projectId: ProjectId,
    id: SessionId,
    requestId: Type.String({ minLength: 1, maxLength: 64, pattern: UI_REQUEST_ID_PATTERN }),
  },
  { additionalProperties: false },
);

/** Seed `ExtensionUiResponseRequest`: one of value / confirmed / cancelled. */
export const ExtensionUiResponseRequest = Type.Union([
  Type.Object({ value: Type.String({ maxLength: 100_000 }) }, { additionalProperties: false }),
  Type.Object({ confirmed: Type.Boolean() }, { additionalProperties: false }),
  Type.Object({ cancelled: Type.Literal(true) }, { additionalProperties: false }),
]);

export const PendingExtensionUiRequestsResponse = Type.Object({
  requests: Type.Array(ExtensionUiRequestSchema, {
    description: "Pending pi `extension_ui_request` events, oldest first.",
  }),
});
