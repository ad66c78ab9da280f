// User bash commands (pi's `!cmd`): run through the session's confined BashOperations (the bash
// tool's own spawner: project dir, minimal env, process-group kill, time cap), never pi's
// default host spawn, and recorded in the session as a bashExecution message.
import type { BashOperations } from "@earendil-works/pi-coding-agent";
import { errorMessage } from "../errors.ts";
import { type CommandHandler, ok, optionalBooleanArg, stringArg } from "./support.ts";

/**
 * `bash {command, excludeFromContext?}` → `{output, exitCode, cancelled, truncated}` (pi's
 * BashResult without `fullOutputPath`; `exitCode` is absent when cancelled). An overflow log
 * (truncated output) goes to the session's OverflowLogs: the model, told its path in the
 * recorded message, can read it. Allowed during a run (pi records the result after it). A string
 * `id` on the request tags pi's bash_execution_update events. Hitting the time cap fails with
 * "Command timed out after N seconds"; the command is still recorded, its output ending with
 * that line and without an exit code (see timeoutAsEnding).
 */
const bash: CommandHandler = async ({ session, bashOperations, overflowLogs }, request) => {
  const command = stringArg(request, "command");
  const excludeFromContext = optionalBooleanArg(request, "excludeFromContext");
  const id = typeof request.id === "string" ? request.id : undefined;
  const capped = timeoutAsEnding(bashOperations);
  const { fullOutputPath, ...result } = await session.executeBash(command, undefined, {
    operations: capped.operations,
    ...(excludeFromContext !== undefined ? { excludeFromContext } : {}),
    ...(id !== undefined ? { id } : {}),
  });
  await overflowLogs.adopt(fullOutputPath);
  const seconds = capped.timedOutAfter();
  if (seconds !== undefined) throw new Error(`Command timed out after ${seconds} seconds`);
  return ok(result);
};

/**
 * `operations` for one user command, with the time cap (`exec` rejecting `Error("timeout:<s>")`,
 * bash-operations.ts) turned into an ending pi records. pi's executor rethrows any error other
 * than its own abort and drops its result with it, and with the result the path of the overflow
 * log it had already opened in os.tmpdir(): that log could never be found, moved or deleted
 * again. Instead the output gets pi's tool status line ("Command timed out after <s> seconds",
 * also streamed as a bash_execution_update) and `exec` resolves with no exit code;
 * `timedOutAfter()` then answers the seconds (undefined while the cap did not hit). Other
 * rejections pass through unchanged.
 */
function timeoutAsEnding(operations: BashOperations): {
  operations: BashOperations;
  timedOutAfter: () => string | undefined;
} {
  let seconds: string | undefined;
  return {
    timedOutAfter: () => seconds,
    operations: {
      exec: async (command, cwd, options) => {
        let endsLine = true;
        const onData = (data: Buffer) => {
          if (data.length > 0) endsLine = data[data.length - 1] === 0x0a;
          options.onData(data);
        };
        try {
          return await operations.exec(command, cwd, { ...options, onData });
        } catch (err) {
          const timeout = /^timeout:(\d+)$/.exec(errorMessage(err));
          if (!timeout) throw err;
          seconds = timeout[1];
          // A blank line before the status, as pi's bash tool writes it.
          onData(Buffer.from(`${endsLine ? "\n" : "\n\n"}Command timed out after ${seconds} seconds\n`));
          return { exitCode: null };
        }
      },
    },
  };
}

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
