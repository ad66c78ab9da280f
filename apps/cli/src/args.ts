/**
 * Argument parsers and small helpers shared by the commands: model and offset syntax, text from
 * stdin, confirmation of destructive commands, time formatting.
 */
import { InvalidArgumentError } from "@commander-js/extra-typings";
import type { Context } from "./context.ts";
import { CliError, ExitCode, usageError } from "./errors.ts";
import { askYesNo, canAsk, readStdin } from "./terminal.ts";

/** pi's thinking levels, as the API accepts them. */
export const THINKING_LEVELS = ["off", "minimal", "low", "medium", "high", "xhigh"] as const;

/** A thinking level. */
export type ThinkingLevel = (typeof THINKING_LEVELS)[number];

/** `provider/id` → its parts (the id may itself contain `/`). For commander's `argParser`. */
export function parseModel(value: string): { provider: string; modelId: string } {
  const slash = value.indexOf("/");
  if (slash <= 0 || slash === value.length - 1) {
    throw new InvalidArgumentError(
      "expected provider/model-id, e.g. anthropic/claude-sonnet-4-5 (see `pifleet models`)",
    );
  }
  return { provider: value.slice(0, slash), modelId: value.slice(slash + 1) };
}

/** A stream offset: `0` or `<ms>-<seq>`. For commander's `argParser`. */
export function parseOffset(value: string): string {
  if (!/^(0|\d+-\d+)$/.test(value)) {
    throw new InvalidArgumentError(
      "expected a stream offset: 0 or <ms>-<seq> (an SSE id, e.g. 1732212345678-0)",
    );
  }
  return value;
}

/** The text of a `<text>` argument: `-` reads stdin. Throws a usage error when it is empty. */
export async function textArgument(ctx: Context, text: string | undefined, what = "text"): Promise<string> {
  const value = text === "-" ? await readStdin(ctx.io) : text;
  if (value === undefined || value.trim() === "") throw usageError(`the ${what} is empty`);
  return text === "-" ? value.replace(/\r?\n$/, "") : value;
}

/**
 * Asks before a destructive action unless `yes`: on a terminal a y/N question; otherwise it
 * refuses (usage error), so scripts must say `--yes`.
 */
export async function confirmOrYes(ctx: Context, yes: boolean | undefined, question: string): Promise<void> {
  if (yes) return;
  if (!canAsk(ctx.io) || ctx.out.json) {
    throw usageError("refusing to delete without confirmation", "add --yes (-y) to confirm");
  }
  if (!(await askYesNo(ctx.io, question))) throw new CliError("cancelled", ExitCode.failure);
}

/** An ISO timestamp as local `YYYY-MM-DD HH:MM`; the input when it does not parse. */
export function formatTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n: number): string => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
