// Aborts (mid-stream and mid-bash) and the bash tool's isolation from the worker's environment.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fauxAssistantMessage, fauxText, fauxToolCall } from "@earendil-works/pi-ai";
import { describe, expect, it } from "vitest";
import { openSession } from "../src/index.ts";
import { eventually, fauxRuntime, onCleanup, recordingSink, sessionDirs } from "./helpers.ts";

/** Pids whose command line contains `needle` (read from /proc). */
function pidsRunning(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(join("/proc", entry, "cmdline"), "utf8").replaceAll("\0", " ");
      if (cmdline.includes(needle)) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

describe("abort", () => {
  it("gives status aborted when aborted mid-stream, and the partial turn is persisted", async () => {
    const dirs = await sessionDirs();
    const { runtime, faux } = await fauxRuntime({ tokensPerSecond: 50 });
    faux.setResponses([fauxAssistantMessage("word ".repeat(200))]);
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    const { sink, waitFor } = recordingSink();
    const running = session.run("talk", {}, sink);
    await waitFor((e) => e.type === "message_update");
    expect(session.isStreaming).toBe(true);
    await session.abort();
    const outcome = await running;
    expect(outcome.status).toBe("aborted");
    expect(outcome.stopReason).toBe("aborted");
    expect(session.isStreaming).toBe(false);
    const lines = readFileSync(dirs.sessionFile, "utf8").trim().split("\n");
    expect(lines.at(-1)).toContain('"stopReason":"aborted"');
  });

  it("stops a run aborted before pi's agent started: no model call, no tool, status aborted", async () => {
    // pi's abort() is a no-op until its agent runs, and pi clears its abort flag when the agent
    // starts: an abort during the preflight (here a slow before_agent_start handler) was lost, and
    // the run went on in full while reporting "aborted".
    const dirs = await sessionDirs();
    const slow = join(dirs.root, "slow-preflight.ts");
    writeFileSync(
      slow,
      'export default function (pi) { pi.on("before_agent_start", () => new Promise((r) => setTimeout(r, 300))); }\n',
    );
    const { runtime, faux } = await fauxRuntime();
    const marker = join(dirs.projectDir, "tool-ran");
    faux.setResponses([
      fauxAssistantMessage([fauxToolCall("bash", { command: `touch ${marker}` })], { stopReason: "toolUse" }),
      fauxAssistantMessage("done"),
    ]);
    const session = await openSession({ runtime, ...dirs, extensionPaths: [slow] });
    onCleanup(() => session.dispose());
    const calls = faux.state.callCount;
    // During the preflight.
    const during = session.run("go", {}, recordingSink().sink);
    await new Promise((r) => setTimeout(r, 100));
    await session.abort();
    expect((await during).status).toBe("aborted");
    // Before pi was even prompted (the fleet's /skill: read is awaited first).
    const before = session.run("go", {}, recordingSink().sink);
    await session.abort();
    expect((await before).status).toBe("aborted");
    expect(faux.state.callCount).toBe(calls);
    expect(existsSync(marker)).toBe(false);
  });

  it("kills the bash process group on abort (status aborted although pi reports an error)", async () => {
    const dirs = await sessionDirs();
    const { runtime, faux } = await fauxRuntime();
    const marker = `${40 + Math.floor(Math.random() * 1000)}.123`;
    faux.setResponses([
      fauxAssistantMessage(fauxToolCall("bash", { command: `sleep ${marker} & sleep ${marker}; wait` }), {
        stopReason: "toolUse",
      }),
      fauxAssistantMessage("never reached"),
    ]);
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    const { sink, waitFor } = recordingSink();
    const running = session.run("sleep", {}, sink);
    await waitFor((e) => e.type === "tool_execution_start");
    // bash itself and both sleeps carry the marker in their command lines
    expect(await eventually(() => pidsRunning(`sleep ${marker}`).length >= 3, 2000)).toBe(true);
    await session.abort();
    const outcome = await running;
    expect(outcome.status).toBe("aborted");
    expect(outcome.stopReason).toBe("error"); // hazard H15: pi ends a tool-time abort with "error"
    expect(session.messages().at(-2)).toMatchObject({ role: "toolResult", isError: true });
    expect(await eventually(() => pidsRunning(`sleep ${marker}`).length === 0, 2000)).toBe(true);
  });

  it("dispose() aborts a streaming run first", async () => {
    const dirs = await sessionDirs();
    const { runtime, faux } = await fauxRuntime({ tokensPerSecond: 50 });
    faux.setResponses([fauxAssistantMessage("word ".repeat(200))]);
    const session = await openSession({ runtime, ...dirs });
    const { sink, waitFor } = recordingSink();
    const running = session.run("talk", {}, sink);
    await waitFor((e) => e.type === "message_update");
    await session.dispose();
    expect((await running).status).toBe("aborted");
    expect((await session.run("again", {}, () => {})).status).toBe("failed");
  });
});

describe("bash isolation", () => {
  it("does not show the worker's env to bash commands, only the minimal env plus bashEnv", async () => {
    process.env.PF_TEST_SECRET = "do-not-leak-1234";
    onCleanup(async () => {
      delete process.env.PF_TEST_SECRET;
    });
    const dirs = await sessionDirs();
    const { runtime, faux } = await fauxRuntime();
    faux.setResponses([
      fauxAssistantMessage(
        [fauxText("env"), fauxToolCall("bash", { command: 'env > env.txt; echo "[$PF_TEST_SECRET]"' })],
        {
          stopReason: "toolUse",
        },
      ),
      fauxAssistantMessage("done"),
    ]);
    const session = await openSession({ runtime, ...dirs, bashEnv: { EXTRA_VAR: "visible" } });
    onCleanup(() => session.dispose());
    const { events, sink } = recordingSink();
    expect((await session.run("show env", {}, sink)).status).toBe("finished");

    const env = readFileSync(join(dirs.projectDir, "env.txt"), "utf8");
    expect(env).not.toContain("do-not-leak-1234");
    expect(JSON.stringify(events)).not.toContain("do-not-leak-1234");
    const vars = Object.fromEntries(
      env
        .trim()
        .split("\n")
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
    // bash itself adds PWD, SHLVL, _ (and OLDPWD on some versions)
    const bashOwn = ["OLDPWD", "PWD", "SHLVL", "_"];
    expect(
      Object.keys(vars)
        .filter((k) => !bashOwn.includes(k))
        .sort(),
    ).toEqual(["EXTRA_VAR", "HOME", "LANG", "PATH", "TERM", "TMPDIR"]);
    expect(vars).toMatchObject({
      PATH: "/usr/local/bin:/usr/bin:/bin",
      HOME: dirs.projectDir,
      LANG: "C.UTF-8",
      TERM: "dumb",
      EXTRA_VAR: "visible",
      PWD: dirs.projectDir,
    });
    expect(Object.keys(vars).some((k) => k.startsWith("PI_"))).toBe(false);
  });
});
