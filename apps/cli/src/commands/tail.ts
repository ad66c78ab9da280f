/** `pifleet tail <project> <session> [--after OFFSET] [--until-idle]`: follow a session stream. */
import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import { parseOffset } from "../args.ts";
import type { Context } from "../context.ts";
import { follow } from "../follow.ts";

/** Registers `tail` on `root`. */
export function registerTail(root: CommandUnknownOpts, context: () => Context): void {
  root
    .command("tail")
    .summary("follow a session's events")
    .description("follow a session's event stream (every run), resuming after disconnects")
    .argument("<project>", "project id")
    .argument("<session>", "session id")
    .option(
      "--after <offset>",
      "start after this offset; 0 replays everything retained (default: from now)",
      parseOffset,
    )
    .option("--until-idle", "exit once the session is idle and every event so far was printed")
    .option("--hide-thinking", "do not show the model's thinking")
    .addHelpText(
      "after",
      `
Prints user messages, the assistant's text (stdout) and run, tool and dialog lines (stderr);
with --json one {"offset", "event"} object per line. Ctrl-C exits with 0.

Examples:
  pifleet tail demo-app "$SID"                        # live
  pifleet tail demo-app "$SID" --after 0 --until-idle # the whole retained history, then exit
  pifleet tail demo-app "$SID" --after 1732212345678-3 --json`,
    )
    .action(async (projectId, sessionId, opts) => {
      const ctx = context();
      // Read the session first, also with --after: a gateway that was never reachable fails here
      // (exit 4, "cannot reach …"), as an unknown session does (exit 1), instead of the stream
      // retrying for ever. Once streaming, a lost connection is retried (a restart, a blip).
      const state = await ctx.call(`cannot read session ${sessionId}`, (api) =>
        api.GET("/v1/projects/{projectId}/sessions/{id}/state", {
          params: { path: { projectId, id: sessionId } },
        }),
      );
      await follow(ctx, projectId, sessionId, {
        after: opts.after ?? state.lastOffset,
        untilIdle: opts.untilIdle === true,
        render: { showUser: true, showRuns: true, showThinking: !opts.hideThinking },
      });
    });
}
