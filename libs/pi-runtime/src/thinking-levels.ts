// Maps between pi's thinking levels (7, including "max") and the fleet contract's (6, up to
// "xhigh"). Until the contract lists "max", pi's "max" is reported as "xhigh": for the client,
// "xhigh" means "the highest level above high".
import type { ThinkingLevel as PiThinkingLevel } from "@earendil-works/pi-agent-core";
import { clampThinkingLevel, type Model } from "@earendil-works/pi-ai";
import { THINKING_LEVELS, type ThinkingLevel } from "@pi-fleet/contracts";

/** pi's default for a new session without an explicit level (pi-coding-agent DEFAULT_THINKING_LEVEL). */
const PI_DEFAULT_THINKING_LEVEL: PiThinkingLevel = "medium";

/** pi's levels, in order (the contract's six plus "max"). */
export const PI_THINKING_LEVELS: readonly PiThinkingLevel[] = [...THINKING_LEVELS, "max"];

/** Whether `value` names one of pi's thinking levels (the contract's, or "max"). */
export function isPiThinkingLevel(value: unknown): value is PiThinkingLevel {
  return typeof value === "string" && (PI_THINKING_LEVELS as readonly string[]).includes(value);
}

/** A pi thinking level as the fleet contract names it ("max" → "xhigh"). */
export function fromPiThinkingLevel(level: string): ThinkingLevel {
  if (level === "max") return "xhigh";
  return (THINKING_LEVELS as readonly string[]).includes(level) ? (level as ThinkingLevel) : "off";
}

/** pi's levels mapped to the contract's, in order, without duplicates. */
export function fromPiThinkingLevels(levels: readonly string[]): ThinkingLevel[] {
  return [...new Set(levels.map(fromPiThinkingLevel))];
}

/** The level a new session on `model` starts with when none is given. */
export function defaultThinkingLevelFor(model: Model<string>): ThinkingLevel {
  return fromPiThinkingLevel(clampThinkingLevel(model, PI_DEFAULT_THINKING_LEVEL));
}
