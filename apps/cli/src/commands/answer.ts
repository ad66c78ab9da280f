/**
 * `pifleet answer <project> <session>`: the session's pending extension dialogs (an extension
 * called `ctx.ui.select/confirm/input/editor` and the run waits), answered interactively or, with
 * `--request-id`, from flags.
 */
import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import type { Context } from "../context.ts";
import { CliError, ExitCode, usageError } from "../errors.ts";
import { isDialog, oneLine } from "../render-events.ts";
import { ask, canAsk } from "../terminal.ts";

/** A pending dialog as `GET …/extension-ui` lists it. */
export interface Dialog {
  type: "extension_ui_request";
  id: string;
  method: string;
  title?: string;
  message?: string;
  options?: string[];
  placeholder?: string;
  prefill?: string;
  timeout?: number;
  [key: string]: unknown;
}

/** The body of an answer. */
export type DialogAnswer = { value: string } | { confirmed: boolean } | { cancelled: true };

/** Flags of the non-interactive mode. */
interface AnswerFlags {
  value?: string;
  confirm?: true;
  deny?: true;
  cancel?: true;
}

/**
 * The answer the flags give, or a usage error when they are not exactly one of `--value`,
 * `--confirm`, `--deny`, `--cancel`, or do not fit the dialog's kind (when it is known).
 */
export function answerFromFlags(flags: AnswerFlags, dialog?: Dialog): DialogAnswer {
  const given = [flags.value !== undefined, flags.confirm, flags.deny, flags.cancel].filter(Boolean).length;
  if (given !== 1) throw usageError("--request-id needs exactly one of --value, --confirm, --deny, --cancel");
  if (flags.cancel) return { cancelled: true };
  const method = dialog?.method;
  if (flags.value !== undefined) {
    if (method === "confirm") throw usageError("a confirm dialog takes --confirm or --deny, not --value");
    if (method === "select" && dialog?.options && !dialog.options.includes(flags.value)) {
      throw usageError(`--value must be one of: ${dialog.options.join(", ")}`);
    }
    return { value: flags.value };
  }
  if (method !== undefined && method !== "confirm") {
    throw usageError(`a ${method} dialog takes --value (or --cancel), not --confirm/--deny`);
  }
  return { confirmed: flags.confirm === true };
}

/** One line describing a dialog. */
function describe(d: Dialog): string {
  const title = oneLine(String(d.title ?? ""), 80);
  let detail = "";
  if (d.method === "select" && d.options) detail = ` [${d.options.join(" | ")}]`;
  if (d.method === "confirm" && d.message) detail = `: ${oneLine(d.message, 80)}`;
  return `${d.id}  ${d.method}  ${title}${detail}`;
}

/** Asks the user about `d`; resolves the answer, or undefined to skip it. */
async function askDialog(ctx: Context, d: Dialog): Promise<DialogAnswer | undefined> {
  const { io, out } = ctx;
  out.note(
    `\n? ${d.title ?? d.method}${d.timeout ? `  (expires ${Math.round(d.timeout / 1000)} s after it was asked)` : ""}`,
    "bold",
  );
  switch (d.method) {
    case "select": {
      const options = d.options ?? [];
      options.forEach((o, i) => {
        out.note(`  ${i + 1}. ${o}`, null);
      });
      for (;;) {
        const a = (await ask(io, `Choose 1-${options.length} (s: skip, c: cancel the dialog): `))?.trim();
        if (a === undefined || a === "s") return undefined;
        if (a === "c") return { cancelled: true };
        const n = Number(a);
        const choice = Number.isInteger(n) ? options[n - 1] : undefined;
        if (choice !== undefined) return { value: choice };
      }
    }
    case "confirm": {
      if (d.message) out.note(`  ${d.message}`, null);
      for (;;) {
        const a = (await ask(io, "y/n (s: skip, c: cancel the dialog): "))?.trim().toLowerCase();
        if (a === undefined || a === "s") return undefined;
        if (a === "c") return { cancelled: true };
        if (a === "y" || a === "yes") return { confirmed: true };
        if (a === "n" || a === "no") return { confirmed: false };
      }
    }
    case "input": {
      const hint = d.placeholder ? ` (${d.placeholder})` : "";
      const a = await ask(io, `Text${hint}, empty to skip: `);
      return a === undefined || a === "" ? undefined : { value: a };
    }
    default: {
      // editor: several lines, ended by a line holding only "."
      if (d.prefill) out.note(`  current text:\n${d.prefill.replace(/^/gm, "  | ")}`, null);
      out.note('  Type the text; end with a line holding only "." (a "." right away skips).', null);
      const lines: string[] = [];
      for (;;) {
        const line = await ask(io, "");
        if (line === undefined || line === ".") break;
        lines.push(line);
      }
      return lines.length === 0 ? undefined : { value: lines.join("\n") };
    }
  }
}

/** Registers `answer` on `root`. */
export function registerAnswer(root: CommandUnknownOpts, context: () => Context): void {
  root
    .command("answer")
    .summary("answer pending extension dialogs")
    .description("list and answer the session's pending extension dialogs (select, confirm, input, editor)")
    .argument("<project>", "project id")
    .argument("<session>", "session id")
    .option("--list", "only list the pending dialogs (the default when stdin is not a terminal, or --json)")
    .option("--request-id <id>", "answer this dialog from the flags below, without asking")
    .option("--value <text>", "the chosen option (select) or the text (input, editor)")
    .option("--confirm", "answer a confirm dialog with yes")
    .option("--deny", "answer a confirm dialog with no")
    .option("--cancel", "dismiss the dialog (the extension gets its default)")
    .addHelpText(
      "after",
      `
Examples:
  pifleet answer demo-app "$SID"                                  # asks, one dialog after the other
  pifleet answer demo-app "$SID" --list --json
  pifleet answer demo-app "$SID" --request-id 4f0c… --confirm
  pifleet answer demo-app "$SID" --request-id 9a1b… --value "staging"`,
    )
    .action(async (projectId, id, opts) => {
      const ctx = context();
      const { out } = ctx;
      const flagged = opts.value !== undefined || opts.confirm || opts.deny || opts.cancel;
      if (opts.requestId === undefined && flagged) {
        throw usageError("--value, --confirm, --deny and --cancel need --request-id");
      }
      if (opts.requestId !== undefined) answerFromFlags(opts); // flag syntax first: exit 2 before any request

      const pending = await ctx.call(`cannot list the dialogs of session ${id}`, (api) =>
        api.GET("/v1/projects/{projectId}/sessions/{id}/extension-ui", {
          params: { path: { projectId, id } },
        }),
      );
      const dialogs = (pending.requests as Dialog[]).filter(isDialog);
      const send = (requestId: string, answer: DialogAnswer) =>
        ctx.call(`cannot answer dialog ${requestId}`, (api) =>
          api.POST("/v1/projects/{projectId}/sessions/{id}/extension-ui/{requestId}/response", {
            params: { path: { projectId, id, requestId } },
            body: answer,
          }),
        );

      if (opts.requestId !== undefined) {
        const requestId = opts.requestId;
        const answer = answerFromFlags(
          opts,
          dialogs.find((d) => d.id === requestId),
        );
        await send(requestId, answer);
        out.result({ ok: true, requestId, answer }, () => out.line(`Answered ${requestId}.`));
        return;
      }

      if (opts.list || out.json || !canAsk(ctx.io)) {
        out.result({ requests: dialogs }, (list) => {
          if (list.requests.length === 0) out.line("No pending dialogs.");
          for (const d of list.requests) out.line(describe(d));
        });
        return;
      }

      if (dialogs.length === 0) {
        out.line("No pending dialogs.");
        return;
      }
      let failed = 0;
      for (const d of dialogs) {
        const answer = await askDialog(ctx, d);
        if (answer === undefined) {
          out.note("skipped");
          continue;
        }
        try {
          await send(d.id, answer);
          out.note("answered", "green");
        } catch (err) {
          if (!(err instanceof CliError) || err.exitCode === ExitCode.unreachable) throw err;
          failed++;
          out.error(err);
        }
      }
      if (failed > 0) throw new CliError(`${failed} answer(s) failed`, ExitCode.failure, { silent: true });
    });
}
