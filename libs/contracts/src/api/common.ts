/** Schemas shared by many routes: ids in paths, the error body, `{ok: true}`. */
import { type TUnsafe, Type } from "typebox";
import { ENTITY_ID_PATTERN, OFFSET_PATTERN, PROVIDER_ID_PATTERN, SLUG_PATTERN } from "../ids.ts";
import { THINKING_LEVELS } from "../thinking.ts";

export const ProjectId = Type.String({ pattern: SLUG_PATTERN, description: "Project id (slug)." });
export const SessionId = Type.String({ pattern: ENTITY_ID_PATTERN, description: "Session id." });
export const RunId = Type.String({ pattern: ENTITY_ID_PATTERN, description: "Run id." });
export const ProviderId = Type.String({ minLength: 1, maxLength: 64, pattern: PROVIDER_ID_PATTERN });
export const Offset = Type.String({
  pattern: OFFSET_PATTERN,
  description: "Stream offset (`<ms>-<seq>` or `0`).",
});

/**
 * A string enum as plain JSON Schema (`{type: "string", enum}`), the form the seed contract and
 * generated clients use (a TypeBox union of literals would render as `anyOf`).
 */
export function StringEnum<const T extends readonly string[]>(
  values: T,
  options: { description?: string } = {},
): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: "string", enum: [...values], ...options });
}

/** Thinking levels (seed `ThinkingLevel`). */
export const ThinkingLevelSchema = StringEnum(THINKING_LEVELS);

/** Every error body (API.md "Errors"). */
export const ErrorResponse = Type.Object({
  error: Type.String(),
  code: Type.String(),
  details: Type.Optional(Type.Unknown()),
});

/** Seed `OkResponse`. */
export const OkResponse = Type.Object({ ok: Type.Literal(true) });

export const ProjectParams = Type.Object({ projectId: ProjectId }, { additionalProperties: false });
export const SessionParams = Type.Object(
  { projectId: ProjectId, id: SessionId },
  { additionalProperties: false },
);
