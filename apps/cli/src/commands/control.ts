/** `pifleet abort` and `pifleet steer`: act on a session's running run. */
import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import { textArgument } from "../args.ts";
import type { Context } from "../context.ts";

/** Registers `abort` and `steer` on `root`. */
export function registerControl(root: CommandUnknownOpts, context: () => Context): void {
  root
    .command("abort")
    .summary("abort the running run")
    .description("abort the session's running run (nothing happens when it is idle)")
    .argument("<project>", "project id")
    .argument("<session>", "session id")
    .option("--cancel-queued", "also cancel the session's queued runs")
    .action(async (projectId, id, opts) => {
      const ctx = context();
      const result = await ctx.call(`cannot abort session ${id}`, (api) =>
        api.POST("/v1/projects/{projectId}/sessions/{id}/abort", {
          params: { path: { projectId, id } },
          body: opts.cancelQueued ? { cancelQueued: true } : {},
        }),
      );
      ctx.out.result(result, (r) => {
        if (!r.aborted) ctx.out.line("Nothing was running.");
        else ctx.out.line(r.runId ? `Aborted run ${r.runId}.` : "Aborted the running run.");
        if (opts.cancelQueued) ctx.out.line(`Cancelled ${r.cancelled ?? 0} queued run(s).`);
      });
    });

  root
    .command("steer")
    .summary("steer the running agent")
    .description("steer the running agent (delivered after its current tool calls); idle: a new prompt")
    .argument("<project>", "project id")
    .argument("<session>", "session id")
    .argument("<text>", "the message; `-` reads it from stdin")
    .addHelpText(
      "after",
      `
Example:
  pifleet steer demo-app "$SID" "use pnpm, not npm"`,
    )
    .action(async (projectId, id, raw) => {
      const ctx = context();
      const text = await textArgument(ctx, raw, "steering text");
      const result = await ctx.call(`cannot steer session ${id}`, (api) =>
        api.POST("/v1/projects/{projectId}/sessions/{id}/steer", {
          params: { path: { projectId, id } },
          body: { text },
        }),
      );
      ctx.out.result(result, (r) => {
        if (r.delivered === "prompt") {
          ctx.out.line(`The session was idle: queued as run ${r.runId ?? "?"}.`);
        } else ctx.out.line(`Delivered to run ${r.runId ?? "?"} (${r.delivered}).`);
      });
    });
}
