// The user bash command runs through the session's confined spawner (minimal env, project dir,
// process-group kill, time cap), and settings commands stay inside their session.
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fauxAssistantMessage, fauxToolCall } from "@earendil-works/pi-ai";
import { describe, expect, it } from "vitest";
import { openSession } from "../src/index.ts";
import { eventually, fauxRuntime, onCleanup, recordingSink, sessionDirs } from "./helpers.ts";

describe("command: bash", () => {
  it("runs confined: no worker env, project dir as cwd and HOME, no fullOutputPath", async () => {
    process.env.PF_TEST_SECRET = "do-not-leak-5678";
    onCleanup(async () => {
      delete process.env.PF_TEST_SECRET;
    });
    const dirs = await sessionDirs();
    const { runtime } = await fauxRuntime();
    const session = await openSession({ runtime, ...dirs, bashEnv: { EXTRA_VAR: "visible" } });
    onCleanup(() => session.dispose());

    const result = await session.command({
      type: "bash",
      command: 'echo "[$PF_TEST_SECRET]"; echo "pwd=$(pwd) home=$HOME extra=$EXTRA_VAR"; env',
    });
    expect(result).toMatchObject({
      success: true,
      data: { exitCode: 0, cancelled: false, truncated: false },
    });
    const data = (result as { data: Record<string, unknown> }).data;
    expect(Object.keys(data).sort()).toEqual(["cancelled", "exitCode", "output", "truncated"]);
    const output = data.output as string;
    expect(output).toContain("[]");
    expect(output).not.toContain("do-not-leak-5678");
    expect(output).toContain(`pwd=${dirs.projectDir} home=${dirs.projectDir} extra=visible`);
    expect(output).not.toMatch(/^PI_/m);

    // recorded in the session as pi's bashExecution message
    expect(session.messages().at(-1)).toMatchObject({ role: "bashExecution", exitCode: 0 });
    expect(await session.command({ type: "bash", command: "exit 3" })).toMatchObject({
      data: { exitCode: 3 },
    });
    // A blank command runs (pi's RPC runs it too); a missing one is an argument error.
    expect(await session.command({ type: "bash", command: " " })).toMatchObject({
      success: true,
      data: { exitCode: 0 },
    });
    expect(await session.command({ type: "bash" })).toMatchObject({ code: "invalid" });
  });

  it("strips fullOutputPath when the output overflows", async () => {
    // Where the log itself goes: overflow-logs.test.ts.
    const dirs = await sessionDirs();
    const { runtime } = await fauxRuntime();
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    const result = await session.command({ type: "bash", command: "seq 1 5000" });
    expect(result).toMatchObject({ success: true, data: { truncated: true } });
    expect((result as { data: object }).data).not.toHaveProperty("fullOutputPath");
    expect(session.messages().at(-1)).not.toHaveProperty("fullOutputPath");
  });

  it("abort_bash kills the user's commands, not the agent's running bash tool", async () => {
    // They shared one spawner, whose abort kills every process group it started: abort_bash
    // ended the agent's running bash tool call (exit 137) too.
    const dirs = await sessionDirs();
    const { runtime, faux } = await fauxRuntime();
    faux.setResponses([
      fauxAssistantMessage([fauxToolCall("bash", { command: "sleep 1; touch tool-done" })], {
        stopReason: "toolUse",
      }),
      fauxAssistantMessage("done"),
    ]);
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    const { sink, waitFor } = recordingSink();
    const run = session.run("go", {}, sink);
    await waitFor((e) => e.type === "tool_execution_start");
    const user = session.command({ type: "bash", command: "sleep 30" });
    await new Promise((r) => setTimeout(r, 100));
    expect(await session.command({ type: "abort_bash" })).toEqual({ success: true });
    expect(await user).toMatchObject({ success: true, data: { cancelled: true } });
    expect((await run).status).toBe("finished");
    expect(existsSync(join(dirs.projectDir, "tool-done"))).toBe(true);
  });

  it("abort_bash cancels a running command", async () => {
    const dirs = await sessionDirs();
    const { runtime } = await fauxRuntime();
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    const started = Date.now();
    const running = session.command({ type: "bash", command: "touch started; sleep 30" });
    expect(await eventually(() => existsSync(join(dirs.projectDir, "started")))).toBe(true);
    expect(await session.command({ type: "abort_bash" })).toEqual({ success: true });
    const result = await running;
    expect(result).toMatchObject({ success: true, data: { cancelled: true } });
    expect((result as { data: { exitCode?: number } }).data.exitCode).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("fails with pi's timeout text at the session's time cap", async () => {
    const dirs = await sessionDirs();
    const { runtime } = await fauxRuntime();
    const session = await openSession({ runtime, ...dirs, bashTimeoutMs: 1000 });
    onCleanup(() => session.dispose());
    expect(await session.command({ type: "bash", command: "sleep 10" })).toEqual({
      success: false,
      error: "Command timed out after 1 seconds",
    });
  });
});

describe("command: settings isolation", () => {
  it("keeps queue modes, auto compaction and auto retry per session (no global settings)", async () => {
    const dirs = await sessionDirs();
    const { runtime, faux } = await fauxRuntime();
    const a = await openSession({ runtime, ...dirs, sessionFile: join(dirs.root, "a.jsonl") });
    onCleanup(() => a.dispose());
    const b = await openSession({ runtime, ...dirs, sessionFile: join(dirs.root, "b.jsonl") });
    onCleanup(() => b.dispose());

    for (const request of [
      { type: "set_steering_mode", mode: "all" },
      { type: "set_follow_up_mode", mode: "all" },
      { type: "set_auto_compaction", enabled: false },
      { type: "set_auto_retry", enabled: false },
    ]) {
      expect(await a.command(request)).toEqual({ success: true });
    }
    const state = async (s: typeof a) => ((await s.command({ type: "get_state" })) as { data: object }).data;
    expect(await state(a)).toMatchObject({
      steeringMode: "all",
      followUpMode: "all",
      autoCompactionEnabled: false,
    });
    expect(await state(b)).toMatchObject({
      steeringMode: "one-at-a-time",
      followUpMode: "one-at-a-time",
      autoCompactionEnabled: true,
    });
    const c = await openSession({ runtime, ...dirs, sessionFile: join(dirs.root, "c.jsonl") });
    onCleanup(() => c.dispose());
    expect(await state(c)).toMatchObject({ steeringMode: "one-at-a-time", autoCompactionEnabled: true });
    expect(readdirSync(dirs.agentDir)).toEqual([]);

    // auto retry: off in a (fails at once), still on in b (schedules a retry)
    const failure = fauxAssistantMessage("", {
      stopReason: "error",
      errorMessage: "503 service unavailable",
    });
    faux.setResponses([failure]);
    const aEvents = recordingSink();
    expect(await a.run("hi", {}, aEvents.sink)).toMatchObject({ status: "failed" });
    expect(aEvents.events.some((e) => e.type === "auto_retry_start")).toBe(false);

    faux.setResponses([failure, fauxAssistantMessage("recovered")]);
    const bEvents = recordingSink();
    const running = b.run("hi", {}, bEvents.sink);
    await bEvents.waitFor((e) => e.type === "auto_retry_start");
    await b.abort(); // skip pi's 2 s backoff
    expect((await running).status).toBe("aborted");
  });
});
