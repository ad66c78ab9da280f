/**
 * The `pifleet` command tree (commander) and {@link run}, which executes one command line and
 * resolves its exit code — in-process, against any {@link Io}, so tests need no child process.
 */
import { Command, CommanderError } from "@commander-js/extra-typings";
import { registerAnswer } from "./commands/answer.ts";
import { registerAuth } from "./commands/auth.ts";
import { registerControl } from "./commands/control.ts";
import { registerModels } from "./commands/models.ts";
import { registerProjects } from "./commands/projects.ts";
import { registerPrompt } from "./commands/prompt.ts";
import { registerSessions } from "./commands/sessions.ts";
import { registerTail } from "./commands/tail.ts";
import { Context } from "./context.ts";
import { ExitCode, toCliError } from "./errors.ts";
import type { Io } from "./io.ts";
import { Output } from "./output.ts";

/** The CLI's version (the package's). */
export const VERSION = "0.1.0";

const EPILOG = `
Connection: PIFLEET_URL and PIFLEET_KEY override what \`pifleet login\` stored
(default http://127.0.0.1:4001, no key: open mode). PIFLEET_TIMEOUT_MS bounds each request
(default 30000; streams have none).

Exit codes: 0 ok, 1 refused by the gateway or run failed, 2 usage, 3 run aborted / interrupted /
cancelled, 4 authentication or network, 130 Ctrl-C.

Quick start:
  pifleet login --url http://127.0.0.1:4001 --no-key
  pifleet projects create "Demo App"
  pifleet prompt demo-app "write hello.txt" --follow`;

/** Runs the command line `argv` (without node and script) against `io`; resolves the exit code. */
export async function run(argv: readonly string[], io: Io): Promise<number> {
  const program = new Command("pifleet").option(
    "--json",
    "machine-readable output: JSON (NDJSON for streams)",
  );
  let ctx: Context | undefined;
  const context = (): Context => {
    ctx ??= new Context(io, program.opts().json === true);
    return ctx;
  };
  const errors = new Output(io, false);
  program
    .description("command-line client of a pi-fleet gateway: projects, sessions, prompts and their streams")
    .version(VERSION, "-V, --version", "print the version")
    .helpOption("-h, --help", "show help")
    .helpCommand("help [command]", "show help for a command")
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: (s, write) => write(errors.paint(io.stderr, s, "red")),
    })
    .exitOverride()
    .showHelpAfterError("(add --help for usage)")
    .addHelpText("after", EPILOG);

  registerAuth(program, context);
  registerProjects(program, context);
  registerSessions(program, context);
  registerPrompt(program, context);
  registerTail(program, context);
  registerControl(program, context);
  registerAnswer(program, context);
  registerModels(program, context);

  try {
    await program.parseAsync([...argv], { from: "user" });
    return ExitCode.ok;
  } catch (err) {
    // Help and --version "fail" with exit code 0; every other commander error is a usage error.
    if (err instanceof CommanderError) return err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    const url = ctx
      ? await ctx.connection().then(
          (c) => c.url,
          () => undefined,
        )
      : undefined;
    const failure = toCliError(err, url);
    (ctx?.out ?? errors).error(failure);
    if (io.env.PIFLEET_DEBUG && err instanceof Error && err.stack) io.stderr.write(`${err.stack}\n`);
    return failure.exitCode;
  }
}
