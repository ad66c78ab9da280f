// The `pifleet` CLI (apps/cli) as a child process against a real single-node stack in open mode,
// with the fake LLM as custom provider and the permission-gate extension (every bash call raises
// a confirm dialog): login writes a 0600 config that later commands use, projects and sessions,
// `prompt --follow` (text on stdout, tool activity on stderr, exit codes 0 / 1 / 3), a dialog
// answered with `answer --request-id`, `--json` everywhere, `tail --after 0` (until idle, and
// Ctrl-C), `abort`, `steer`, `models`, and the exit codes for API errors (1) and an unreachable
// gateway (4).
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type FakeLlm, findFreePort, startFakeLlm, uniquePrefix, waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { registerFakeProvider } from "../support/http.ts";
import { repoRoot, type Stack, startStack, stopAllStacks } from "../support/stack.ts";

const GATE = fileURLToPath(new URL("../fixtures/extensions/permission-gate.ts", import.meta.url));
const PROJECT = "cli-e2e";

let llm: FakeLlm;
let stack: Stack;
let home: string;
const children = new Set<ChildProcess>();

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface CliProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  done: Promise<CliResult>;
}

/** Starts `pifleet …args` with a private HOME / XDG_CONFIG_HOME (no PIFLEET_* unless given). */
function startCli(args: string[], opts: { stdin?: string; env?: Record<string, string> } = {}): CliProcess {
  const child = spawn(process.execPath, ["--conditions=@pi-fleet/source", "apps/cli/src/main.ts", ...args], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: home,
      XDG_CONFIG_HOME: join(home, ".config"),
      NO_COLOR: "1",
      ...opts.env,
    },
    stdio: ["pipe", "pipe", "pipe"],
  });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (c: Buffer) => {
    stdout += c.toString("utf8");
  });
  child.stderr?.on("data", (c: Buffer) => {
    stderr += c.toString("utf8");
  });
  child.stdin?.end(opts.stdin ?? "");
  const done = new Promise<CliResult>((resolve) => {
    child.once("close", (code) => {
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
  return { child, stdout: () => stdout, stderr: () => stderr, done };
}

/** Runs `pifleet …args` to completion (killed after `timeoutMs`). */
async function cli(
  args: string[],
  opts: { stdin?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult> {
  const p = startCli(args, opts);
  const timer = setTimeout(() => p.child.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
  try {
    return await p.done;
  } finally {
    clearTimeout(timer);
  }
}

/** Runs a `--json` command that must succeed and parses its one JSON document. */
async function cliJson<T = Record<string, unknown>>(args: string[]): Promise<T> {
  const res = await cli([...args, "--json"]);
  expect(res.code, res.stderr).toBe(0);
  return JSON.parse(res.stdout) as T;
}

/** Parses NDJSON stream output: `{offset, event}` per line. */
function ndjson(text: string): { offset?: string; event: { type: string; runId?: string } }[] {
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l));
}

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), "pifleet-cli-e2e-"));
  llm = await startFakeLlm();
  stack = await startStack({
    redisUrl: inject("redisUrl"),
    prefix: uniquePrefix("e2e cli"),
    env: { PI_EXTENSION_PATHS: GATE },
  });
  await registerFakeProvider(stack.url, llm);
});

afterAll(async () => {
  for (const child of children) child.kill("SIGKILL");
  await stopAllStacks();
  await llm?.close();
  if (home) await rm(home, { recursive: true, force: true });
});

describe("pifleet CLI against a running stack", () => {
  let sessionId = "";

  it("login stores the URL (and a key from stdin) in a 0600 file the other commands use", async () => {
    const withKey = await cli(["login", "--url", `${stack.url}/`, "--key", "-", "--json"], {
      stdin: "pfk_e2e_key_not_needed_in_open_mode\n",
    });
    expect(withKey.code, withKey.stderr).toBe(0);
    const file = join(home, ".config", "pifleet", "config.json");
    expect(JSON.parse(withKey.stdout)).toEqual({
      url: stack.url,
      keyConfigured: true,
      verified: true,
      configPath: file,
    });
    expect(withKey.stdout + withKey.stderr).not.toContain("pfk_e2e_key");
    expect(JSON.parse(await readFile(file, "utf8"))).toEqual({
      url: stack.url,
      key: "pfk_e2e_key_not_needed_in_open_mode",
    });
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    // Open mode needs no key at all.
    const open = await cli(["login", "--url", stack.url, "--no-key"]);
    expect(open.code, open.stderr).toBe(0);
    expect(open.stdout).toContain(`Logged in to ${stack.url} with no key (open mode)`);
    expect(JSON.parse(await readFile(file, "utf8"))).toEqual({ url: stack.url });
  });

  it("exits 4 when the gateway cannot be reached (PIFLEET_URL overrides the config)", async () => {
    const port = await findFreePort();
    const res = await cli(["projects", "ls"], { env: { PIFLEET_URL: `http://127.0.0.1:${port}` } });
    expect(res.code).toBe(4);
    expect(res.stderr).toContain(`cannot reach http://127.0.0.1:${port}`);
    expect(res.stderr).not.toMatch(/\n\s+at /);
  });

  it("creates, lists and deletes projects", async () => {
    expect(await cliJson(["projects", "create", "CLI E2E"])).toMatchObject({ id: PROJECT, name: "CLI E2E" });
    const tmp = await cli(["projects", "create", "CLI Tmp"]);
    expect(tmp).toMatchObject({ code: 0, stdout: "cli-tmp\n" });

    const human = await cli(["projects", "ls"]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^ID\s+NAME\s+CREATED/);
    expect(human.stdout).toContain("cli-tmp");
    expect(human.stdout).toContain(PROJECT);

    expect((await cli(["projects", "rm", "cli-tmp", "--yes"])).code).toBe(0);
    const { projects } = await cliJson<{ projects: { id: string }[] }>(["projects", "ls"]);
    expect(projects.map((p) => p.id)).toContain(PROJECT);
    expect(projects.map((p) => p.id)).not.toContain("cli-tmp");

    const missing = await cli(["projects", "rm", "cli-tmp", "--yes"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot delete project cli-tmp: .*\(PF_ERR_PROJECT_NOT_FOUND\)/);
  });

  it("creates and lists sessions", async () => {
    const created = await cli([
      "sessions",
      "create",
      PROJECT,
      "--name",
      "first",
      "--model",
      "fake/fake-model",
    ]);
    expect(created.code, created.stderr).toBe(0);
    sessionId = created.stdout.trim();
    expect(sessionId).toMatch(/^[\w-]+$/);

    const { sessions } = await cliJson<{ sessions: { id: string; name?: string }[] }>([
      "sessions",
      "ls",
      PROJECT,
    ]);
    expect(sessions).toContainEqual(expect.objectContaining({ id: sessionId, name: "first" }));
    expect((await cli(["sessions", "ls", PROJECT])).stdout).toContain(sessionId);

    const unknown = await cli(["sessions", "ls", "no-such-project"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("PF_ERR_PROJECT_NOT_FOUND");
  });

  it("prompt --follow prints the reply and exits 0", async () => {
    const res = await cli(["prompt", PROJECT, sessionId, "[[reply:Hello from the fake LLM]]", "--follow"]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toBe("Hello from the fake LLM\n");
    expect(res.stderr).toMatch(/✓ run finished · [\d,]+ tokens/);
  });

  it("prompt --follow shows tool activity and waits for a dialog answered with `answer`", async () => {
    const prompt = startCli(["prompt", PROJECT, "[[bash:echo cli-e2e > out.txt && cat out.txt]]", "-f"]);
    await waitFor(() => prompt.stderr().includes("waiting for an answer"), {
      timeoutMs: 30_000,
      message: "the confirm dialog",
    });
    const sid = /session (\S+) created/.exec(prompt.stderr())?.[1];
    expect(sid).toBeDefined();

    const { requests } = await cliJson<{ requests: { id: string; method: string; message?: string }[] }>([
      "answer",
      PROJECT,
      sid!,
    ]);
    expect(requests).toHaveLength(1);
    expect(requests[0]).toMatchObject({
      method: "confirm",
      message: "echo cli-e2e > out.txt && cat out.txt",
    });
    const wrong = await cli(["answer", PROJECT, sid!, "--request-id", requests[0]!.id, "--value", "yes"]);
    expect(wrong.code).toBe(2);
    const answered = await cli(["answer", PROJECT, sid!, "--request-id", requests[0]!.id, "--confirm"]);
    expect(answered.code, answered.stderr).toBe(0);

    const res = await prompt.done;
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toContain("→ bash  echo cli-e2e > out.txt && cat out.txt\n");
    expect(res.stderr).toContain("✓ bash  cli-e2e\n");
    expect(res.stderr).toContain("[info] bash allowed");
    expect(res.stdout).toContain("tool said: cli-e2e");
    expect(await readFile(join(stack.workspaceDir, "default", "projects", PROJECT, "out.txt"), "utf8")).toBe(
      "cli-e2e\n",
    );
    expect((await cli(["answer", PROJECT, sid!])).stdout).toBe("No pending dialogs.\n");
  });

  it("a failing run exits 1", async () => {
    const res = await cli(["prompt", PROJECT, sessionId, "[[fail:500]]", "--follow"], { timeoutMs: 60_000 });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain("✗ run failed: ");
    expect(res.stderr).toContain("fake failure");
  });

  it("--json: prompt answers one document, --follow one event per line", async () => {
    const queued = await cliJson<{ runId: string; sessionId: string; offset: string; position: number }>([
      "prompt",
      PROJECT,
      sessionId,
      "[[reply:queued only]]",
    ]);
    expect(queued).toMatchObject({ sessionId, position: 0 });

    const res = await cli(["prompt", PROJECT, sessionId, "[[reply:as json]]", "--follow", "--json"]);
    expect(res.code, res.stderr).toBe(0);
    const items = ndjson(res.stdout);
    // Only this run's events, even while the run queued just before is still going.
    const runs = new Set(items.filter((i) => i.event.type.startsWith("run_")).map((i) => i.event.runId));
    expect(runs.size).toBe(1);
    expect(runs.has(queued.runId)).toBe(false);
    expect(items[0]?.event.type).toBe("run_queued");
    expect(items.at(-1)?.event.type).toBe("run_finished");
    expect(items.every((i) => typeof i.offset === "string")).toBe(true);
    expect(items.some((i) => i.event.type === "message_update")).toBe(true);

    const models = await cliJson<{ models: { provider: string; id: string; available: boolean }[] }>([
      "models",
    ]);
    expect(models.models).toContainEqual(
      expect.objectContaining({ provider: "fake", id: "fake-model", available: true }),
    );
    expect(models.models.every((m) => m.available)).toBe(true);
  });

  it("tail --after 0 replays the session's runs, until idle or until Ctrl-C", async () => {
    const idle = await cli(["tail", PROJECT, sessionId, "--after", "0", "--until-idle"]);
    expect(idle.code, idle.stderr).toBe(0);
    expect(idle.stdout).toContain("> [[reply:Hello from the fake LLM]]\n");
    expect(idle.stdout).toContain("Hello from the fake LLM\n");
    expect(idle.stdout).toContain("as json\n");
    expect(idle.stderr).toContain("✓ run finished");
    expect(idle.stderr).toContain("✗ run failed");

    const json = await cli(["tail", PROJECT, sessionId, "--after", "0", "--until-idle", "--json"]);
    expect(json.code).toBe(0);
    const types = ndjson(json.stdout).map((i) => i.event.type);
    expect(types.filter((t) => t === "run_finished").length).toBeGreaterThanOrEqual(3);
    expect(types).toContain("run_failed");

    const live = startCli(["tail", PROJECT, sessionId, "--after", "0"]);
    await waitFor(() => live.stdout().includes("as json"), { timeoutMs: 20_000, message: "the replay" });
    live.child.kill("SIGINT");
    const res = await live.done;
    expect(res.code, res.stderr).toBe(0);
  });

  it("abort stops a followed run (exit 3); steer on an idle session queues a prompt", async () => {
    const prompt = startCli(["prompt", PROJECT, sessionId, "[[delay:40]] [[deltas:400]]", "--follow"]);
    await waitFor(() => prompt.stdout().includes("d3 "), { timeoutMs: 30_000, message: "streaming deltas" });
    const abort = await cli(["abort", PROJECT, sessionId, "--cancel-queued"]);
    expect(abort.code, abort.stderr).toBe(0);
    expect(abort.stdout).toMatch(/^Aborted run \S+\.\nCancelled 0 queued run\(s\)\.\n$/);
    const res = await prompt.done;
    expect(res.code).toBe(3);
    expect(res.stderr).toContain("■ run aborted");

    expect(await cliJson(["abort", PROJECT, sessionId])).toMatchObject({ ok: true, aborted: false });
    const steer = await cliJson<{ delivered: string; runId: string }>([
      "steer",
      PROJECT,
      sessionId,
      "[[reply:steered]]",
    ]);
    expect(steer.delivered).toBe("prompt");
    const after = await cli(["tail", PROJECT, sessionId, "--after", "0", "--until-idle"]);
    expect(after.stdout).toContain("steered\n");
  });
});
