/** Health and readiness bodies (seed `HealthResponse`, plus `/v1/readyz`). */
import { Type } from "typebox";

export const HealthResponse = Type.Object({
  ok: Type.Literal(true),
  service: Type.Literal("agent-server"),
  time: Type.String(),
  channels: Type.Record(Type.String(), Type.Number()),
});

export const ReadyResponse = Type.Object({
  ok: Type.Boolean(),
  redis: Type.Boolean(),
  draining: Type.Boolean(),
});
