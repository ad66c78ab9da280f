// The CLI's command line, run in-process (apps/cli/src/program.ts `run`) with fake streams:
// usage errors exit 2 before any request, help and version exit 0, login --no-verify writes a
// 0600 config (key from stdin), and the answer flags map to the API's bodies.
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { answerFromFlags } from "../../apps/cli/src/commands/answer.ts";
import { outcomeExitCode } from "../../apps/cli/src/commands/prompt.ts";
import { CliError } from "../../apps/cli/src/errors.ts";
import type { Io } from "../../apps/cli/src/io.ts";
import { run, VERSION } from "../../apps/cli/src/program.ts";
import { textSink } from "../support/text-sink.ts";

let configDir: string;

beforeAll(async () => {
  configDir = await mkdtemp(join(tmpdir(), "pifleet-args-"));
});

afterAll(async () => {
  await rm(configDir, { recursive: true, force: true });
});

/** Runs the CLI in-process; a closed port as gateway, so nothing can be reached by accident. */
async function cli(argv: string[], stdin = "") {
  const out = textSink();
  const err = textSink();
  const io: Io = {
    stdout: out.stream,
    stderr: err.stream,
    stdin: Readable.from(stdin === "" ? [] : [Buffer.from(stdin)]),
    env: { PIFLEET_CONFIG_DIR: configDir, PIFLEET_URL: "http://127.0.0.1:9", NO_COLOR: "1" },
    onInterrupt: () => () => {},
  };
  const code = await run(argv, io);
  return { code, stdout: out.text(), stderr: err.text() };
}

describe("usage errors exit 2", () => {
  const cases: [string, string[], RegExp][] = [
    ["no command", [], /Usage: pifleet/],
    ["unknown command", ["frobnicate"], /unknown command/],
    ["unknown option", ["projects", "ls", "--bogus"], /unknown option/],
    ["missing argument", ["projects", "create"], /missing required argument 'name'/],
    ["excess argument", ["prompt", "p", "s", "text", "extra"], /too many arguments/],
    ["missing prompt text", ["prompt", "p"], /missing the prompt text/],
    ["empty prompt text", ["prompt", "p", "s", "  "], /prompt text is empty/],
    [
      "session options with a session",
      ["prompt", "p", "s", "hi", "--name", "x"],
      /only apply to a new session/,
    ],
    ["bad model", ["sessions", "create", "p", "--model", "nomodel"], /provider\/model-id/],
    ["bad thinking level", ["sessions", "create", "p", "--thinking", "max"], /Allowed choices/],
    ["bad offset", ["tail", "p", "s", "--after", "yesterday"], /stream offset/],
    ["answer flag without id", ["answer", "p", "s", "--confirm"], /need --request-id/],
    ["two answers", ["answer", "p", "s", "--request-id", "r", "--confirm", "--deny"], /exactly one of/],
    ["no answer", ["answer", "p", "s", "--request-id", "r"], /exactly one of/],
    ["bad URL", ["login", "--url", "ftp://host", "--no-key", "--no-verify"], /must be http/],
    ["rm without --yes off a terminal", ["projects", "rm", "demo"], /--yes/],
    ["session rm without --yes", ["sessions", "rm", "demo", "s1"], /--yes/],
  ];
  for (const [name, argv, message] of cases) {
    it(name, async () => {
      const res = await cli(argv);
      expect(res.code, res.stderr).toBe(2);
      expect(res.stderr).toMatch(message);
      expect(res.stdout).toBe("");
      expect(res.stderr).not.toMatch(/\n\s+at /); // no stack trace
    });
  }
});

describe("help and version", () => {
  it("prints help for the program and each command with exit 0", async () => {
    const top = await cli(["--help"]);
    expect(top.code).toBe(0);
    for (const command of [
      "login",
      "logout",
      "projects",
      "sessions",
      "prompt",
      "tail",
      "abort",
      "steer",
      "answer",
      "models",
    ]) {
      expect(top.stdout).toContain(command);
      const help = await cli([command, "--help"]);
      expect(help.code, command).toBe(0);
      expect(help.stdout).toMatch(/^Usage: pifleet /);
    }
    expect(top.stdout).toContain("Exit codes");
    expect((await cli(["help", "prompt"])).stdout).toContain("--follow");
  });

  it("prints the version", async () => {
    const res = await cli(["--version"]);
    expect(res).toMatchObject({ code: 0, stdout: `${VERSION}\n` });
  });
});

describe("login --no-verify", () => {
  it("stores the URL and the key read from stdin in a 0600 file", async () => {
    const res = await cli(
      ["login", "--url", "http://127.0.0.1:4001/", "--key", "-", "--no-verify", "--json"],
      "pfk_from_stdin_0123\n",
    );
    expect(res.code, res.stderr).toBe(0);
    const file = join(configDir, "config.json");
    expect(JSON.parse(res.stdout)).toEqual({
      url: "http://127.0.0.1:4001",
      keyConfigured: true,
      verified: false,
      configPath: file,
    });
    expect(res.stdout + res.stderr).not.toContain("pfk_from_stdin_0123");
    expect(JSON.parse(await readFile(file, "utf8"))).toEqual({
      url: "http://127.0.0.1:4001",
      key: "pfk_from_stdin_0123",
    });
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    const logout = await cli(["logout", "--json"]);
    expect(JSON.parse(logout.stdout)).toMatchObject({ removed: true });
    expect((await cli(["logout"])).stdout).toContain("Not logged in");
  });
});

describe("answer flags and exit codes", () => {
  it("maps flags to the API's answer bodies and checks them against the dialog", () => {
    expect(answerFromFlags({ value: "prod" })).toEqual({ value: "prod" });
    expect(answerFromFlags({ confirm: true })).toEqual({ confirmed: true });
    expect(answerFromFlags({ deny: true })).toEqual({ confirmed: false });
    expect(answerFromFlags({ cancel: true })).toEqual({ cancelled: true });
    const select = { type: "extension_ui_request" as const, id: "q", method: "select", options: ["a", "b"] };
    expect(answerFromFlags({ value: "b" }, select)).toEqual({ value: "b" });
    expect(() => answerFromFlags({ value: "c" }, select)).toThrow(/one of: a, b/);
    expect(() => answerFromFlags({ confirm: true }, select)).toThrow(CliError);
    const confirm = { type: "extension_ui_request" as const, id: "q", method: "confirm" };
    expect(() => answerFromFlags({ value: "yes" }, confirm)).toThrow(/--confirm or --deny/);
  });

  it("maps run outcomes to exit codes", () => {
    expect(outcomeExitCode("finished")).toBe(0);
    expect(outcomeExitCode("failed")).toBe(1);
    expect(outcomeExitCode("aborted")).toBe(3);
    expect(outcomeExitCode("interrupted")).toBe(3);
    expect(outcomeExitCode("cancelled")).toBe(3);
  });
});
