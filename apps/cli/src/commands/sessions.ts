/** `pifleet sessions ls <project> | create <project> | rm <project> <session>`. */
import { type CommandUnknownOpts, Option } from "@commander-js/extra-typings";
import { confirmOrYes, formatTime, parseModel, THINKING_LEVELS, type ThinkingLevel } from "../args.ts";
import type { Context } from "../context.ts";
import { oneLine } from "../render-events.ts";

/** The body of `POST …/sessions` from the create options. */
export function sessionBody(opts: {
  name?: string;
  model?: { provider: string; modelId: string };
  thinking?: ThinkingLevel;
}): { name?: string; provider?: string; modelId?: string; thinkingLevel?: ThinkingLevel } {
  return {
    ...(opts.name === undefined ? {} : { name: opts.name }),
    ...(opts.model === undefined ? {} : { provider: opts.model.provider, modelId: opts.model.modelId }),
    ...(opts.thinking === undefined ? {} : { thinkingLevel: opts.thinking }),
  };
}

/** Creates a session in `projectId` and resolves its id. */
export async function createSession(
  ctx: Context,
  projectId: string,
  body: ReturnType<typeof sessionBody>,
): Promise<{ id: string; createdAt: string; name?: string }> {
  return ctx.call(`cannot create a session in project ${projectId}`, (api) =>
    api.POST("/v1/projects/{projectId}/sessions", { params: { path: { projectId } }, body }),
  );
}

/** `--model provider/id` (shared with `prompt`). */
export function modelOption() {
  return new Option(
    "--model <provider/id>",
    "model, e.g. anthropic/claude-sonnet-4-5 (see `pifleet models`)",
  ).argParser(parseModel);
}

/** `--thinking <level>` (shared with `prompt`). */
export function thinkingOption() {
  return new Option("--thinking <level>", "thinking level").choices(THINKING_LEVELS);
}

/** Registers the `sessions` command group on `root`. */
export function registerSessions(root: CommandUnknownOpts, context: () => Context): void {
  const sessions = root
    .command("sessions")
    .summary("list, create and delete sessions")
    .description("list, create and delete the sessions of a project")
    .addHelpText(
      "after",
      `
Examples:
  pifleet sessions ls demo-app
  SID=$(pifleet sessions create demo-app --name fix-tests --model fake/fake-model --thinking low)
  pifleet sessions rm demo-app "$SID" --yes`,
    );

  sessions
    .command("ls")
    .alias("list")
    .description("list the sessions of a project, newest first")
    .argument("<project>", "project id")
    .action(async (projectId) => {
      const ctx = context();
      const data = await ctx.call(`cannot list the sessions of project ${projectId}`, (api) =>
        api.GET("/v1/projects/{projectId}/sessions", { params: { path: { projectId } } }),
      );
      ctx.out.result(data, ({ sessions: list }) =>
        ctx.out.table(
          ["ID", "NAME", "MESSAGES", "CREATED", "FIRST MESSAGE"],
          list.map((s) => [
            s.id,
            s.name ?? "",
            String(s.messageCount),
            formatTime(s.createdAt),
            oneLine(s.firstMessage ?? "", 50),
          ]),
          `no sessions yet: pifleet sessions create ${projectId}`,
        ),
      );
    });

  sessions
    .command("create")
    .description("create a session (prints its id)")
    .argument("<project>", "project id")
    .option("--name <name>", "session name")
    .addOption(modelOption())
    .addOption(thinkingOption())
    .action(async (projectId, opts) => {
      const ctx = context();
      const session = await createSession(ctx, projectId, sessionBody(opts));
      ctx.out.result(session, (s) => {
        ctx.out.line(s.id);
        ctx.out.note(`session ${s.id}${s.name ? ` ("${s.name}")` : ""} in project ${projectId}`);
      });
    });

  sessions
    .command("rm")
    .alias("delete")
    .description("delete a session, its transcript and its stream")
    .argument("<project>", "project id")
    .argument("<session>", "session id")
    .option("-y, --yes", "do not ask for confirmation (required when not on a terminal)")
    .action(async (projectId, id, opts) => {
      const ctx = context();
      await confirmOrYes(ctx, opts.yes, `Delete session ${id} of project ${projectId}?`);
      await ctx.call(`cannot delete session ${id}`, (api) =>
        api.DELETE("/v1/projects/{projectId}/sessions/{id}", { params: { path: { projectId, id } } }),
      );
      ctx.out.result({ ok: true, projectId, id }, () => ctx.out.line(`Deleted session ${id}.`));
    });
}
