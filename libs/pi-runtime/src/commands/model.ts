// Model and thinking-level commands. Models are answered as the fleet's ModelRow (never pi's
// Model object) and come from the org runtime's own list of available models; thinking levels
// use the contract's names (pi's "max" is reported as "xhigh"). Model changes are session-only.
import {
  fromPiThinkingLevel,
  fromPiThinkingLevels,
  isPiThinkingLevel,
  PI_THINKING_LEVELS,
} from "../thinking-levels.ts";
import type { ModelRow } from "../types.ts";
import { busy, CommandArgError, type CommandContext, type CommandHandler, ok, stringArg } from "./support.ts";

/** `get_available_models` → `{models: ModelRow[]}`: the org runtime's models with auth, in its order. */
const getAvailableModels: CommandHandler = ({ runtime }) =>
  ok({ models: runtime.listModels().filter((m) => m.available) });

/**
 * `set_model {provider, modelId}` → the ModelRow. "invalid" with pi's `Model not found: p/id`
 * unless the model is available; "busy" during a run (as PiSession.setModel). pi applies the
 * clamped thinking level for the new model and records a model_change entry.
 */
const setModel: CommandHandler = async (ctx, request) => {
  const provider = stringArg(request, "provider");
  const modelId = stringArg(request, "modelId");
  const row = ctx.runtime.findModel(provider, modelId);
  if (!row?.available) throw new CommandArgError(`Model not found: ${provider}/${modelId}`);
  if (ctx.busy) return busy(request.type);
  await switchTo(ctx, row);
  return ok(row);
};

/**
 * `cycle_model` → `{model: ModelRow, thinkingLevel, isScoped: false} | null` (null with at most
 * one available model). Like pi without scoped models: the next available model after the
 * current one (the first's successor when the current one is not listed), wrapping around.
 * "busy" during a run.
 */
const cycleModel: CommandHandler = async (ctx, request) => {
  if (ctx.busy) return busy(request.type);
  const models = ctx.runtime.listModels().filter((m) => m.available);
  if (models.length <= 1) return ok(null);
  const current = ctx.session.model;
  const index = Math.max(
    0,
    models.findIndex((m) => m.provider === current?.provider && m.id === current?.id),
  );
  const next = models[(index + 1) % models.length] as ModelRow;
  await switchTo(ctx, next);
  return ok({ model: next, thinkingLevel: fromPiThinkingLevel(ctx.session.thinkingLevel), isScoped: false });
};

/** pi's setModel for a row of this runtime (throws pi's "No API key for p/id" without auth). */
async function switchTo({ session, rt }: CommandContext, row: ModelRow): Promise<void> {
  const model = rt.getModel(row.provider, row.id);
  if (!model) throw new CommandArgError(`Model not found: ${row.provider}/${row.id}`);
  await session.setModel(model);
}

/**
 * `set_thinking_level {level}` → no data. Accepts pi's levels (the contract's six and "max");
 * pi clamps to the model (a non-reasoning model stays "off"), read it back with get_state.
 */
const setThinkingLevel: CommandHandler = ({ session }, request) => {
  const level = request.level;
  if (!isPiThinkingLevel(level)) {
    throw new CommandArgError(`${request.type}: "level" must be one of ${PI_THINKING_LEVELS.join(", ")}`);
  }
  session.setThinkingLevel(level);
  return ok();
};

/** `cycle_thinking_level` → `{level}`, or null when the model does not support thinking. */
const cycleThinkingLevel: CommandHandler = ({ session }) => {
  const level = session.cycleThinkingLevel();
  return ok(level === undefined ? null : { level: fromPiThinkingLevel(level) });
};

/** `get_available_thinking_levels` → `{levels}` for the current model (`["off"]` without reasoning). */
const getAvailableThinkingLevels: CommandHandler = ({ session }) =>
  ok({ levels: fromPiThinkingLevels(session.getAvailableThinkingLevels()) });

/** Handlers of the model group, by command type. */
export const modelCommands: Record<string, CommandHandler> = {
  get_available_models: getAvailableModels,
  set_model: setModel,
  cycle_model: cycleModel,
  set_thinking_level: setThinkingLevel,
  cycle_thinking_level: cycleThinkingLevel,
  get_available_thinking_levels: getAvailableThinkingLevels,
};
