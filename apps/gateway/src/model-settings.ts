/**
 * A session's effective model settings as clients see them: the chosen model (or the org's
 * default), and the thinking level clamped to what the model supports (a model without
 * reasoning only has "off", as pi clamps it).
 */
import { THINKING_LEVELS, type ThinkingLevel } from "@pi-fleet/contracts";
import { defaultModel, type ModelRow, type SessionRecord } from "@pi-fleet/registry";

/** Effective settings of a session. */
export interface EffectiveSettings {
  model: ModelRow | null;
  thinkingLevel: ThinkingLevel;
  availableThinkingLevels: ThinkingLevel[];
  supportsThinking: boolean;
}

/** Levels a model accepts (source: pi clamps non-reasoning models to "off"). */
export function levelsFor(model: ModelRow | null): ThinkingLevel[] {
  return model?.reasoning ? [...THINKING_LEVELS] : ["off"];
}

/** Clamps `level` to the model's levels. */
export function clampLevel(model: ModelRow | null, level: ThinkingLevel | undefined): ThinkingLevel {
  return level && levelsFor(model).includes(level) ? level : "off";
}

/** Resolves the session's model among `models` and its effective thinking level. */
export function effectiveSettings(session: SessionRecord, models: readonly ModelRow[]): EffectiveSettings {
  const model =
    (session.provider && session.modelId
      ? models.find((m) => m.provider === session.provider && m.id === session.modelId)
      : defaultModel(models)) ?? null;
  return {
    model,
    thinkingLevel: clampLevel(model, session.thinkingLevel),
    availableThinkingLevels: levelsFor(model),
    supportsThinking: model?.reasoning ?? false,
  };
}
