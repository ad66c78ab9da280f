// A killed or aborted run leaves no stray process, on the host and in the bwrap sandbox: the
// bash tool's command (a background `sleep` plus a foreground one) is aborted, times out, or
// leaves a background child behind until the session is disposed; afterwards no process of the
// command's process groups is left (checked in /proc).
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fauxAssistantMessage, fauxToolCall } from "@earendil-works/pi-ai";
import { describe, expect, it } from "vitest";
import { openSession, type PiSession } from "../src/index.ts";
import { probeSandbox, type SandboxOptions } from "../src/sandbox.ts";
import { eventually, fauxRuntime, onCleanup, recordingSink, sessionDirs, tempDir } from "./helpers.ts";

const bwrapSkip = await probeSandbox({ mode: "bwrap" }).then(
  () => undefined,
  (err: unknown) => (err as Error).message,
);

interface Proc {
  pid: number;
  pgid: number;
  cmdline: string;
}

/**
 * Every live process on the machine: pid, process group (from /proc/<pid>/stat) and command
 * line. Zombies are dead already (only waiting for their reaper, pid 1 of the container) and
 * are left out.
 */
function processes(): Proc[] {
  const out: Proc[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(join("/proc", entry, "stat"), "utf8");
      // "pid (comm) state ppid pgrp …": comm may contain spaces and parentheses.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] === "Z") continue;
      const cmdline = readFileSync(join("/proc", entry, "cmdline"), "utf8").replaceAll("\0", " ");
      out.push({ pid: Number(entry), pgid: Number(fields[2]), cmdline });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** A `sleep` duration no other process uses, so its command lines identify this test's processes. */
function uniqueMarker(): string {
  return `${900 + Math.floor(Math.random() * 99)}.${Math.floor(Math.random() * 1e6)}`;
}

/** Opens a session whose model runs `command` with the bash tool, then says "done". */
async function sessionRunning(
  command: string,
  sandbox: SandboxOptions,
  bashTimeoutMs?: number,
): Promise<{ session: PiSession; waitForTool: () => Promise<unknown>; run: Promise<unknown> }> {
  const dirs = await sessionDirs();
  const { runtime, faux } = await fauxRuntime();
  faux.setResponses([
    fauxAssistantMessage(fauxToolCall("bash", { command }), { stopReason: "toolUse" }),
    fauxAssistantMessage("done"),
  ]);
  const session = await openSession({
    runtime,
    ...dirs,
    sandbox,
    ...(bashTimeoutMs ? { bashTimeoutMs } : {}),
  });
  onCleanup(() => session.dispose());
  const { sink, waitFor } = recordingSink();
  const run = session.run("go", {}, sink);
  return { session, run, waitForTool: () => waitFor((e) => e.type === "tool_execution_start") };
}

/** The process groups of the marker's processes, once at least `min` of them run. */
async function groupsOf(marker: string, min: number): Promise<Set<number>> {
  const mine = () => processes().filter((p) => p.cmdline.includes(marker));
  expect(await eventually(() => mine().length >= min)).toBe(true);
  return new Set(mine().map((p) => p.pgid));
}

/** True once no process carries the marker and none is left in any of `groups`. */
function noneLeft(marker: string, groups: Set<number>): Promise<boolean> {
  return eventually(() => processes().every((p) => !p.cmdline.includes(marker) && !groups.has(p.pgid)));
}

describe.each([
  { mode: "none" as const, skip: undefined },
  { mode: "bwrap" as const, skip: bwrapSkip },
])("process groups, sandbox $mode", ({ mode, skip }) => {
  const sandbox: SandboxOptions = { mode };
  // bash plus both sleeps; in the sandbox also bwrap and its init, which carry the command too
  const minProcs = mode === "bwrap" ? 5 : 3;

  it.skipIf(skip !== undefined)(
    `abort kills the whole group, background child included${skip ? ` (SKIPPED: ${skip})` : ""}`,
    async () => {
      const marker = uniqueMarker();
      const { session, run, waitForTool } = await sessionRunning(
        `sleep ${marker} & sleep ${marker}; wait`,
        sandbox,
      );
      await waitForTool();
      const groups = await groupsOf(marker, minProcs);
      expect(groups.has(process.pid)).toBe(false); // detached: never the worker's own group
      await session.abort();
      expect(await run).toMatchObject({ status: "aborted" });
      expect(await noneLeft(marker, groups)).toBe(true);
    },
  );

  it.skipIf(skip !== undefined)(
    `the time cap kills the whole group${skip ? ` (SKIPPED: ${skip})` : ""}`,
    async () => {
      const marker = uniqueMarker();
      const { run, waitForTool } = await sessionRunning(
        `sleep ${marker} & sleep ${marker}; wait`,
        sandbox,
        1500,
      );
      await waitForTool();
      const groups = await groupsOf(marker, minProcs);
      expect(await run).toMatchObject({ status: "finished" }); // the model saw "timed out" and said done
      expect(await noneLeft(marker, groups)).toBe(true);
    },
  );

  it.skipIf(skip !== undefined)(
    `no background child outlives the session${skip ? ` (SKIPPED: ${skip})` : ""}`,
    async () => {
      const marker = uniqueMarker();
      const { session, run } = await sessionRunning(
        `sleep ${marker} >/dev/null 2>&1 & echo started`,
        sandbox,
      );
      expect(await run).toMatchObject({ status: "finished" });
      const leftover = processes().filter((p) => p.cmdline.includes(marker));
      if (mode === "bwrap") {
        // The PID namespace ends with the command.
        expect(await noneLeft(marker, new Set())).toBe(true);
      } else {
        // On the host a background child may keep running between commands, until dispose.
        expect(leftover.length).toBe(1);
        await session.dispose();
        expect(await noneLeft(marker, new Set(leftover.map((p) => p.pgid)))).toBe(true);
      }
    },
  );
});

describe.skipIf(bwrapSkip !== undefined)(
  `process groups, bwrap only${bwrapSkip ? ` (SKIPPED: ${bwrapSkip})` : ""}`,
  () => {
    it("a setsid child (own session, outside the group) dies with the sandbox too", async () => {
      const marker = uniqueMarker();
      const { session, run, waitForTool } = await sessionRunning(
        `setsid sleep ${marker} & sleep ${marker}; wait`,
        { mode: "bwrap" },
      );
      await waitForTool();
      const groups = await groupsOf(marker, 5);
      expect(groups.size).toBeGreaterThan(1); // setsid really left the command's group
      await session.abort();
      expect(await run).toMatchObject({ status: "aborted" });
      expect(await noneLeft(marker, groups)).toBe(true);
    });

    it("a SIGKILLed worker takes its sandboxed commands with it (--die-with-parent)", async () => {
      const marker = uniqueMarker();
      const dir = await tempDir();
      const script = join(dir, "worker.ts");
      const ops = new URL("../src/bash-operations.ts", import.meta.url).pathname;
      await writeFile(
        script,
        `import { createHostBashOperations } from ${JSON.stringify(ops)};
const dir = ${JSON.stringify(dir)};
const bash = createHostBashOperations({ cwd: dir, env: { PATH: "/usr/bin:/bin" }, maxTimeoutMs: 60_000,
  sandbox: { bwrapPath: "/usr/bin/bwrap", tmpDir: dir, network: false } });
await bash.exec("setsid sleep ${marker} & sleep ${marker}; wait", dir, { onData: () => {} });
`,
      );
      const worker = spawn(process.execPath, [script], { stdio: "ignore" });
      onCleanup(async () => {
        worker.kill("SIGKILL");
      });
      const groups = await groupsOf(marker, 5);
      worker.kill("SIGKILL");
      expect(await noneLeft(marker, groups)).toBe(true);
    });
  },
);
