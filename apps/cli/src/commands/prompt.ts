/** `pifleet prompt <project> [session] <text> [--follow]`: queue a prompt, optionally stream its run. */
import { randomUUID } from "node:crypto";
import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import { textArgument } from "../args.ts";
import type { Context } from "../context.ts";
import { CliError, ExitCode, usageError } from "../errors.ts";
import { follow } from "../follow.ts";
import type { RunOutcome } from "../render-events.ts";
import { createSession, modelOption, sessionBody, thinkingOption } from "./sessions.ts";

/** The exit code for a followed run's outcome. */
export function outcomeExitCode(outcome: RunOutcome): number {
  if (outcome === "finished") return ExitCode.ok;
  if (outcome === "failed") return ExitCode.failure;
  return ExitCode.runStopped;
}

/** Registers `prompt` on `root`. */
export function registerPrompt(root: CommandUnknownOpts, context: () => Context): void {
  root
    .command("prompt")
    .summary("send a prompt (--follow: stream the run)")
    .description("send a prompt to a session (a new one when none is given) and optionally follow its run")
    .argument("<project>", "project id")
    .argument("[session]", "session id; omit it to create a session")
    .argument("[text]", "the prompt; `-` reads it from stdin")
    .option(
      "-f, --follow",
      "stream the run: text to stdout, tool activity to stderr; exit with the run's outcome",
    )
    .option("--name <name>", "name of the session created (no session given)")
    .addOption(modelOption())
    .addOption(thinkingOption())
    .option("--hide-thinking", "with --follow: do not show the model's thinking")
    .option("--idempotency-key <key>", "the same key within 24 h returns the same run instead of a new one")
    .addHelpText(
      "after",
      `
With two arguments the second is the text: \`pifleet prompt demo-app "fix the tests"\` creates a
session; its id is printed to stderr (and is in every run event with --json).
Text starting with "-" must follow "--": pifleet prompt demo-app -- "-v is broken".

--follow resumes by itself after a disconnect. Ctrl-C stops following (the run goes on).
Exit codes with --follow: 0 finished, 1 failed, 3 aborted / interrupted / cancelled,
4 auth or network, 130 Ctrl-C.

Examples:
  pifleet prompt demo-app "add a README" --follow
  pifleet prompt demo-app "$SID" "run the tests" -f > answer.md
  git diff | pifleet prompt demo-app "$SID" - --follow --json | jq -c .event.type`,
    )
    .action(async (projectId, sessionArg, textArg, opts) => {
      const ctx = context();
      const { out } = ctx;
      let session = sessionArg;
      let raw = textArg;
      if (raw === undefined) {
        if (session === undefined)
          throw usageError("missing the prompt text", 'e.g. pifleet prompt demo-app "hello"');
        raw = session;
        session = undefined;
      }
      const creating = session === undefined;
      if (!creating && (opts.name !== undefined || opts.model !== undefined || opts.thinking !== undefined)) {
        throw usageError("--name, --model and --thinking only apply to a new session (no session given)");
      }
      const text = await textArgument(ctx, raw, "prompt text");

      let sessionId: string;
      if (session === undefined) {
        const created = await createSession(ctx, projectId, sessionBody(opts));
        sessionId = created.id;
        out.note(`session ${sessionId} created in project ${projectId}`);
      } else {
        sessionId = session;
      }

      const idempotencyKey = opts.idempotencyKey ?? `pifleet-${randomUUID()}`;
      const run = await ctx.call(
        `cannot prompt session ${sessionId}`,
        (api) =>
          api.POST("/v1/projects/{projectId}/sessions/{id}/prompt", {
            params: { path: { projectId, id: sessionId } },
            body: { text },
            headers: { "Idempotency-Key": idempotencyKey },
          }),
        { progress: "sending the prompt…" },
      );

      if (!opts.follow) {
        out.result({ projectId, sessionId, sessionCreated: creating, ...run }, (r) => {
          out.line(r.runId);
          out.note(
            `run ${r.runId} queued in session ${sessionId}${r.position > 0 ? ` behind ${r.position} run(s)` : ""}`,
          );
          out.note(`follow it: pifleet tail ${projectId} ${sessionId} --after ${r.offset} --until-idle`);
        });
        return;
      }

      const result = await follow(ctx, projectId, sessionId, {
        after: run.offset,
        runId: run.runId,
        position: run.position,
        render: { showThinking: !opts.hideThinking },
      });
      if (result.interrupted) {
        out.note(`stopped following; run ${run.runId} goes on.`, "yellow");
        out.note(`resume: pifleet tail ${projectId} ${sessionId} --after ${result.lastOffset ?? run.offset}`);
        out.note(`stop it: pifleet abort ${projectId} ${sessionId}`);
        throw new CliError("interrupted", ExitCode.interrupted, { silent: true });
      }
      const code = result.outcome === undefined ? ExitCode.failure : outcomeExitCode(result.outcome);
      if (code !== ExitCode.ok) {
        // With --json the reason is not on stdout (only wire events are): it goes in the message.
        const reason = result.endEvent?.error ?? result.endEvent?.reason;
        const detail = typeof reason === "string" && reason !== "" ? `: ${reason}` : "";
        throw new CliError(`run ${run.runId} ${result.outcome ?? "ended"}${detail}`, code, {
          silent: !out.json,
        });
      }
    });
}
