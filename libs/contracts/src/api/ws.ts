/**
 * `GET /v1/ws` frames (API.md "WebSocket"): JSON text frames, each with `kind`. One socket carries
 * many subscriptions (session streams, or a project's activity when `sessionId` is absent) and
 * request/response pairs for the REST operations on sessions.
 */
import { Type } from "typebox";
import { UI_REQUEST_ID_PATTERN } from "../ids.ts";
import { ProjectId, SessionId, StringEnum } from "./common.ts";

/** Protocol version spoken by this server. */
export const WS_PROTOCOL = 1;

/** Operations a `request` frame may name, mapped to REST routes by the gateway. */
export const WS_METHODS = [
  "prompt",
  "steer",
  "follow_up",
  "abort",
  "commands",
  "extension_ui_response",
  "state",
  "messages",
] as const;

const RequestId = Type.Union([Type.String({ maxLength: 128 }), Type.Integer()]);

export const WsHello = Type.Object(
  { kind: Type.Literal("hello"), protocol: Type.Integer({ minimum: 1 }) },
  { additionalProperties: false },
);

export const WsSubscribe = Type.Object(
  {
    kind: Type.Literal("subscribe"),
    id: Type.Optional(RequestId),
    projectId: ProjectId,
    sessionId: Type.Optional(SessionId),
    after: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);

export const WsUnsubscribe = Type.Object(
  {
    kind: Type.Literal("unsubscribe"),
    id: Type.Optional(RequestId),
    projectId: ProjectId,
    sessionId: Type.Optional(SessionId),
  },
  { additionalProperties: false },
);

export const WsRequest = Type.Object(
  {
    kind: Type.Literal("request"),
    id: RequestId,
    method: StringEnum(WS_METHODS),
    params: Type.Object(
      {
        projectId: ProjectId,
        sessionId: SessionId,
        requestId: Type.Optional(
          Type.String({ minLength: 1, maxLength: 64, pattern: UI_REQUEST_ID_PATTERN }),
        ),
        idempotencyKey: Type.Optional(Type.String({ maxLength: 200 })),
      },
      { additionalProperties: true },
    ),
  },
  { additionalProperties: false },
);

export const WsPing = Type.Object(
  { kind: Type.Literal("ping"), id: Type.Optional(RequestId) },
  { additionalProperties: false },
);

/** Every frame a client may send. */
export const WsClientFrame = Type.Union([WsHello, WsSubscribe, WsUnsubscribe, WsRequest, WsPing]);
