// Session files across runtimes (reopen, torn tail, corrupt header) and what the agent sees of its
// surroundings (AGENTS.md of the project only).
import { appendFileSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fauxAssistantMessage } from "@earendil-works/pi-ai";
import { describe, expect, it } from "vitest";
import { AGENTS_FILE_MAX_BYTES, openSession } from "../src/index.ts";
import { fauxRuntime, onCleanup, sessionDirs } from "./helpers.ts";

const roles = (messages: unknown[]) => messages.map((m) => (m as { role: string }).role);

describe("session files", () => {
  it("continues the transcript when the file is reopened in a new runtime", async () => {
    const dirs = await sessionDirs();
    const first = await fauxRuntime();
    first.faux.setResponses([fauxAssistantMessage("noted: 42")]);
    const s1 = await openSession({ runtime: first.runtime, ...dirs });
    expect((await s1.run("remember 42", {}, () => {})).status).toBe("finished");
    const id = s1.piSessionId;
    await s1.dispose();

    const second = await fauxRuntime();
    let seen = "";
    second.faux.setResponses([
      (context) => {
        seen = JSON.stringify(context.messages);
        return fauxAssistantMessage("it was 42");
      },
    ]);
    const s2 = await openSession({ runtime: second.runtime, ...dirs });
    onCleanup(() => s2.dispose());
    expect(s2.piSessionId).toBe(id);
    expect(JSON.stringify(s2.messages())).toContain("remember 42");
    expect((await s2.run("what was it?", {}, () => {})).status).toBe("finished");
    expect(seen).toContain("remember 42");
    expect(seen).toContain("noted: 42");
    expect(roles(s2.messages())).toEqual(["user", "assistant", "user", "assistant"]);
    const header = JSON.parse(readFileSync(dirs.sessionFile, "utf8").split("\n")[0] ?? "{}");
    expect(header).toMatchObject({ type: "session", id, cwd: dirs.projectDir });
  });

  it("restores the session's last model on reopen when no model is given", async () => {
    const dirs = await sessionDirs();
    const a = await fauxRuntime({ modelIds: ["faux-1", "faux-2"] });
    a.faux.setResponses([fauxAssistantMessage("hi")]);
    const s1 = await openSession({
      runtime: a.runtime,
      ...dirs,
      model: { provider: "faux", modelId: "faux-2" },
    });
    await s1.run("hello", {}, () => {});
    await s1.dispose();
    const b = await fauxRuntime({ modelIds: ["faux-1", "faux-2"] });
    const s2 = await openSession({ runtime: b.runtime, ...dirs });
    onCleanup(() => s2.dispose());
    expect(s2.settings().model?.id).toBe("faux-2");
  });

  it("repairs a torn last line on reopen and keeps chaining entries", async () => {
    const dirs = await sessionDirs();
    const a = await fauxRuntime();
    a.faux.setResponses([fauxAssistantMessage("one")]);
    const s1 = await openSession({ runtime: a.runtime, ...dirs });
    await s1.run("first", {}, () => {});
    await s1.dispose();
    appendFileSync(dirs.sessionFile, '{"type":"message","id":"deadbeef","parentId":null,"mess');

    const b = await fauxRuntime();
    b.faux.setResponses([fauxAssistantMessage("two")]);
    const s2 = await openSession({ runtime: b.runtime, ...dirs });
    expect(roles(s2.messages())).toEqual(["user", "assistant"]);
    expect((await s2.run("second", {}, () => {})).status).toBe("finished");
    await s2.dispose();

    const c = await fauxRuntime();
    const s3 = await openSession({ runtime: c.runtime, ...dirs });
    onCleanup(() => s3.dispose());
    expect(roles(s3.messages())).toEqual(["user", "assistant", "user", "assistant"]);
  });

  it("refuses a file with a corrupt header as corrupt_session and leaves it untouched", async () => {
    const dirs = await sessionDirs();
    const { runtime } = await fauxRuntime();
    await mkdir(dirname(dirs.sessionFile), { recursive: true });
    const garbage = 'not json\n{"type":"message"}\n';
    writeFileSync(dirs.sessionFile, garbage);
    await expect(openSession({ runtime, ...dirs })).rejects.toMatchObject({
      name: "PiRuntimeError",
      code: "corrupt_session",
    });
    expect(readFileSync(dirs.sessionFile, "utf8")).toBe(garbage);
  });
});

describe("project context", () => {
  async function systemPromptOf(dirs: Awaited<ReturnType<typeof sessionDirs>>): Promise<string> {
    const { runtime, faux } = await fauxRuntime();
    let prompt = "";
    faux.setResponses([
      (context) => {
        prompt = JSON.stringify(context.messages.filter((m) => m.role === "system"));
        return fauxAssistantMessage("ok");
      },
    ]);
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    await session.run("hi", {}, () => {});
    return prompt;
  }

  it("puts the project's AGENTS.md into the system prompt, never a parent's", async () => {
    const dirs = await sessionDirs();
    writeFileSync(join(dirs.projectDir, "AGENTS.md"), "PROJECT-RULE-7");
    writeFileSync(join(dirname(dirs.projectDir), "AGENTS.md"), "ORG-LEVEL-SECRET");
    writeFileSync(join(dirs.root, "AGENTS.md"), "ROOT-LEVEL-SECRET");
    writeFileSync(join(dirname(dirs.projectDir), "CLAUDE.md"), "ORG-CLAUDE");
    const prompt = await systemPromptOf(dirs);
    expect(prompt).toContain("PROJECT-RULE-7");
    expect(prompt).not.toContain("ORG-LEVEL-SECRET");
    expect(prompt).not.toContain("ROOT-LEVEL-SECRET");
    expect(prompt).not.toContain("ORG-CLAUDE");
    expect(prompt).not.toContain("PI_* environment");
  });

  it("refuses a symlinked AGENTS.md and caps a large one", async () => {
    const dirs = await sessionDirs();
    writeFileSync(join(dirs.root, "outside.md"), "OUTSIDE-CONTENT");
    symlinkSync(join(dirs.root, "outside.md"), join(dirs.projectDir, "AGENTS.md"));
    expect(await systemPromptOf(dirs)).not.toContain("OUTSIDE-CONTENT");

    const big = await sessionDirs();
    writeFileSync(
      join(big.projectDir, "AGENTS.md"),
      `HEAD-MARK${"x".repeat(AGENTS_FILE_MAX_BYTES)}TAIL-MARK`,
    );
    const prompt = await systemPromptOf(big);
    expect(prompt).toContain("HEAD-MARK");
    expect(prompt).not.toContain("TAIL-MARK");
    expect(prompt).toContain("truncated");
  });
});
