// The command switch of PiSession.command(): pi's RPC command semantics (rpc-mode.js of 0.87.1),
// reimplemented over one AgentSession without server paths. Groups: state.ts, model.ts,
// queue.ts (queue modes, retry, compaction), bash.ts, tree.ts, sessions.ts (fork, clone,
// new_session, switch_session) and export.ts (export_html).
import { errorMessage, firstLine } from "../errors.ts";
import type { CommandRequest, CommandResult } from "../types.ts";
import { bashCommands } from "./bash.ts";
import { exportCommands } from "./export.ts";
import { modelCommands } from "./model.ts";
import { queueCommands } from "./queue.ts";
import { sessionCommands } from "./sessions.ts";
import { stateCommands } from "./state.ts";
import { CommandArgError, type CommandContext, type CommandHandler } from "./support.ts";
import { treeCommands } from "./tree.ts";

export type { CommandContext } from "./support.ts";

const HANDLERS: ReadonlyMap<string, CommandHandler> = new Map(
  Object.entries({
    ...stateCommands,
    ...modelCommands,
    ...queueCommands,
    ...bashCommands,
    ...treeCommands,
    ...sessionCommands,
    ...exportCommands,
  }),
);

/** pi commands the fleet serves through PiSession.run / steer / followUp / abort instead. */
const ELSEWHERE = new Set(["prompt", "steer", "follow_up", "abort"]);

/**
 * The command types command() answers (for docs and tests). Each has a request schema in
 * @pi-fleet/contracts (`commandSchema`), which the gateway checks before a command reaches a
 * worker; test/unit/command-schemas.test.ts holds the two lists together.
 */
export const COMMAND_TYPES: readonly string[] = [...HANDLERS.keys()];

/**
 * Runs one command. Never throws: a request without a string `type` → "invalid";
 * prompt, steer, follow_up, abort → "unsupported" `<type> is not available as a command`; any
 * other unknown type → "unsupported" with pi's `Unknown command: <type>`. Bad arguments →
 * "invalid"; errors pi throws → `{success: false, error}` with the first line of pi's message.
 */
export async function runCommand(ctx: CommandContext, request: CommandRequest): Promise<CommandResult> {
  const type: unknown = typeof request === "object" && request !== null ? request.type : undefined;
  if (typeof type !== "string" || type === "") {
    return { success: false, code: "invalid", error: 'A command needs a string "type"' };
  }
  if (ELSEWHERE.has(type)) {
    return { success: false, code: "unsupported", error: `${type} is not available as a command` };
  }
  const handler = HANDLERS.get(type);
  if (!handler) return { success: false, code: "unsupported", error: `Unknown command: ${type}` };
  try {
    return await handler(ctx, request);
  } catch (err) {
    if (err instanceof CommandArgError) return { success: false, code: "invalid", error: err.message };
    return { success: false, error: firstLine(errorMessage(err)) };
  }
}
