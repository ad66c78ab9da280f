// User bash commands (pi's `!cmd`): run through the session's confined BashOperations (the bash
// tool's own spawner: project dir, minimal env, process-group kill, time cap), never pi's
// default host spawn, and recorded in the session as a bashExecution message.
import { errorMessage } from "../errors.ts";
import { type CommandHandler, nonEmptyStringArg, ok, optionalBooleanArg } from "./support.ts";

/**
 * `bash {command, excludeFromContext?}` → `{output, exitCode, cancelled, truncated}` (pi's
 * BashResult without `fullOutputPath`; `exitCode` is absent when cancelled). An overflow log
 * (truncated output) goes to the session's OverflowLogs: the model, told its path in the
 * recorded message, can read it. Allowed during a
 * run (pi records the result after it). A string `id` on the request tags pi's
 * bash_execution_update events. Hitting the time cap fails with "Command timed out after N
 * seconds".
 */
const bash: CommandHandler = async ({ session, bashOperations, overflowLogs }, request) => {
  const command = nonEmptyStringArg(request, "command");
  const excludeFromContext = optionalBooleanArg(request, "excludeFromContext");
  const id = typeof request.id === "string" ? request.id : undefined;
  try {
    const { fullOutputPath, ...result } = await session.executeBash(command, undefined, {
      operations: bashOperations,
      ...(excludeFromContext !== undefined ? { excludeFromContext } : {}),
      ...(id !== undefined ? { id } : {}),
    });
    await overflowLogs.adopt(fullOutputPath);
    return ok(result);
  } catch (err) {
    const timeout = /^timeout:(\d+)$/.exec(errorMessage(err));
    if (timeout) throw new Error(`Command timed out after ${timeout[1]} seconds`, { cause: err });
    throw err;
  }
};

/** `abort_bash` → no data: kills the running user bash commands (not the agent's bash tool). */
const abortBash: CommandHandler = ({ session }) => {
  session.abortBash();
  return ok();
};

/** Handlers of the bash group, by command type. */
export const bashCommands: Record<string, CommandHandler> = {
  bash,
  abort_bash: abortBash,
};
