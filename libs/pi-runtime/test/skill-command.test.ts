// `/skill:name args` through a PiSession: expanded in pi's format from the skill file, read
// confined to the roots the session loaded its skills from. A project SKILL.md that was swapped
// for a symlink (or whose directory was) after the session opened fails the run without the
// target's text ever reaching the model; unknown skills pass through verbatim.
import { mkdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fauxAssistantMessage, fauxToolCall, type TranscriptContext } from "@earendil-works/pi-ai";
import { describe, expect, it } from "vitest";
import { openSession } from "../src/index.ts";
import { expandSkillCommand, SKILL_FILE_MAX_BYTES, SkillReadError } from "../src/skill-command.ts";
import { fauxRuntime, onCleanup, recordingSink, sessionDirs, tempDir } from "./helpers.ts";

async function put(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
}

const SECRET = "OTHER-TENANT-SECRET-MARKER";

/** A session with one project skill; `seen` collects what the model receives per call. */
async function sessionWithSkill() {
  const dirs = await sessionDirs();
  const outside = await tempDir("pf-outside-");
  const skillDir = join(dirs.projectDir, ".pi", "skills", "deploy");
  await put(join(skillDir, "SKILL.md"), "---\nname: deploy\ndescription: Deploys\n---\n\nRun make deploy.\n");
  await put(join(outside, "SKILL.md"), `---\nname: deploy\ndescription: x\n---\n\n${SECRET}\n`);
  const { runtime, faux } = await fauxRuntime();
  const seen: string[] = [];
  const reply = (context: TranscriptContext) => {
    seen.push(JSON.stringify(context.messages));
    return fauxAssistantMessage("ok");
  };
  faux.setResponses([reply, reply, reply]);
  const session = await openSession({ runtime, ...dirs });
  onCleanup(() => session.dispose());
  return { session, seen, skillDir, outside, dirs };
}

describe("/skill: commands", () => {
  it("expands a project skill in a prompt, in pi's format, with the arguments after it", async () => {
    const { session, seen } = await sessionWithSkill();
    const outcome = await session.run("/skill:deploy to staging", {}, recordingSink().sink);
    expect(outcome.status).toBe("finished");
    const last = seen.at(-1) ?? "";
    expect(last).toContain('<skill name=\\"deploy\\" location=\\".pi/skills/deploy/SKILL.md\\">');
    expect(last).toContain("References are relative to .pi/skills/deploy.");
    expect(last).toContain("Run make deploy.");
    expect(last).toContain("</skill>\\n\\nto staging");
    expect(last).not.toContain("description: Deploys"); // frontmatter stripped
  });

  it("names no server path in the expansion; the model reads a project skill's files relative to the project", async () => {
    // The block named the skill's absolute path (location, base dir): it went into the user
    // message, so into the run's events, the persisted history and exports, telling the tenant
    // where the workspace (or an operator's skill) lives on the server.
    const dirs = await sessionDirs();
    const operator = await tempDir("pf-operator-skills-");
    await put(
      join(operator, "review", "SKILL.md"),
      "---\nname: review\ndescription: Reviews\n---\n\nReview it.\n",
    );
    const skillDir = join(dirs.projectDir, ".pi", "skills", "deploy");
    await put(join(skillDir, "SKILL.md"), "---\nname: deploy\ndescription: Deploys\n---\n\nRead steps.md.\n");
    await put(join(skillDir, "steps.md"), "STEP-ONE\n");
    const { runtime, faux } = await fauxRuntime();
    const seen: string[] = [];
    let told = "";
    faux.setResponses([
      (context: TranscriptContext) => {
        seen.push(JSON.stringify(context.messages));
        told = /References are relative to (.*?)\.\\n/.exec(seen[0] ?? "")?.[1] ?? "";
        return fauxAssistantMessage(fauxToolCall("read", { path: `${told}/steps.md` }, { id: "r" }), {
          stopReason: "toolUse",
        });
      },
      fauxAssistantMessage("done"),
      (context: TranscriptContext) => {
        seen.push(JSON.stringify(context.messages));
        return fauxAssistantMessage("ok");
      },
    ]);
    const session = await openSession({ runtime, ...dirs, skillPaths: [operator] });
    onCleanup(() => session.dispose());
    const { events, sink } = recordingSink();
    expect((await session.run("/skill:deploy now", {}, sink)).status).toBe("finished");
    expect((await session.run("/skill:review", {}, sink)).status).toBe("finished");
    expect(seen[0]).toContain('<skill name=\\"deploy\\" location=\\".pi/skills/deploy/SKILL.md\\">');
    expect(told).toBe(".pi/skills/deploy");
    const read = (session.messages() as { role: string; content?: { text?: string }[] }[]).find(
      (m) => m.role === "toolResult",
    );
    expect(JSON.stringify(read)).toContain("STEP-ONE");
    expect(seen[1]).toContain('<skill name=\\"review\\" location=\\"operator-skill:review/SKILL.md\\">');
    // (The model also gets pi's skill list in its system prompt, with absolute paths; clients get
    // that prompt blank: sanitize.ts.)
    const blocks = [...new Set(seen.flatMap((c) => c.match(/<skill [\s\S]*?<\/skill>/g) ?? []))];
    expect(blocks).toHaveLength(2);
    for (const shown of [JSON.stringify(events), JSON.stringify(session.messages()), ...blocks]) {
      expect(shown).not.toContain(dirs.root);
      expect(shown).not.toContain(operator);
    }
  });

  it("fails the run when the skill file was swapped for a symlink after the session opened", async () => {
    const { session, seen, skillDir, outside } = await sessionWithSkill();
    await rm(join(skillDir, "SKILL.md"));
    await symlink(join(outside, "SKILL.md"), join(skillDir, "SKILL.md"));
    const outcome = await session.run("/skill:deploy", {}, recordingSink().sink);
    expect(outcome).toMatchObject({
      status: "failed",
      error: "skill deploy: the skill file lies outside its skill directory",
    });
    expect(seen.join("")).not.toContain(SECRET);
  });

  it("fails the run when the skill's directory was swapped for a symlink out of the project", async () => {
    const { session, seen, skillDir, outside } = await sessionWithSkill();
    await rename(skillDir, `${skillDir}.old`);
    await symlink(outside, skillDir);
    const outcome = await session.run("/skill:deploy", {}, recordingSink().sink);
    expect(outcome).toMatchObject({
      status: "failed",
      error: "skill deploy: the skill file lies outside its skill directory",
    });
    expect(seen.join("")).not.toContain(SECRET);
  });

  it("expands a skill in a steer; a swapped skill file refuses the steer and the run goes on", async () => {
    const dirs = await sessionDirs();
    const skillDir = join(dirs.projectDir, ".pi", "skills", "deploy");
    await put(
      join(skillDir, "SKILL.md"),
      "---\nname: deploy\ndescription: Deploys\n---\n\nRun make deploy.\n",
    );
    const outside = await tempDir("pf-outside-");
    await put(join(outside, "SKILL.md"), SECRET);
    const { runtime, faux } = await fauxRuntime();
    const seen: string[] = [];
    const tool = () =>
      fauxAssistantMessage(fauxToolCall("bash", { command: "sleep 0.3" }), { stopReason: "toolUse" });
    faux.setResponses([
      tool(),
      (context: TranscriptContext) => {
        seen.push(JSON.stringify(context.messages));
        return tool();
      },
      (context: TranscriptContext) => {
        seen.push(JSON.stringify(context.messages));
        return fauxAssistantMessage("done");
      },
    ]);
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    const { sink, waitFor } = recordingSink();
    const running = session.run("start", {}, sink);
    await waitFor((e) => e.type === "tool_execution_start");
    await session.steer("/skill:deploy now");
    await rm(join(skillDir, "SKILL.md"));
    await symlink(join(outside, "SKILL.md"), join(skillDir, "SKILL.md"));
    await expect(session.steer("/skill:deploy again")).rejects.toThrow(
      "skill deploy: the skill file lies outside its skill directory",
    );
    expect((await running).status).toBe("finished");
    expect(seen[0]).toContain("Run make deploy.");
    expect(seen[0]).toContain("</skill>\\n\\nnow");
    expect(seen.join("")).not.toContain(SECRET);
  });

  it("passes an unknown skill and other text through verbatim", async () => {
    const { session, seen } = await sessionWithSkill();
    expect((await session.run("/skill:nope now", {}, recordingSink().sink)).status).toBe("finished");
    expect(seen.at(-1)).toContain("/skill:nope now");
    expect(seen.at(-1)).not.toContain("<skill name=");
  });
});

describe("expandSkillCommand", () => {
  it("reads only inside the given roots and refuses oversized or non-regular files", async () => {
    const root = await tempDir("pf-skill-root-");
    const big = join(root, "big", "SKILL.md");
    await put(big, "x".repeat(SKILL_FILE_MAX_BYTES + 1));
    const ok = join(root, "ok", "SKILL.md");
    await put(ok, "body");
    const skills = [
      { name: "big", filePath: big, baseDir: dirname(big) },
      { name: "ok", filePath: ok, baseDir: dirname(ok) },
      { name: "dir", filePath: root, baseDir: root },
    ];
    const expand = (roots: string[], text: string, projectDir = "/nowhere") =>
      expandSkillCommand(skills, roots, text, projectDir);
    await expect(expand([root], "/skill:big")).rejects.toThrow(SkillReadError);
    await expect(expand([root], "/skill:dir")).rejects.toThrow("not a regular file");
    // The same file with no root it could lie in: refused.
    await expect(expand([], "/skill:ok")).rejects.toThrow("outside its skill directory");
    // Outside the project: the skill's directory and file names only, marked as not the project's.
    expect(await expand([root], "/skill:ok")).toBe(
      `<skill name="ok" location="operator-skill:ok/SKILL.md">\nReferences are relative to operator-skill:ok.\n\nbody\n</skill>`,
    );
    // In the project: relative to it.
    expect(await expand([root], "/skill:ok", root)).toBe(
      `<skill name="ok" location="ok/SKILL.md">\nReferences are relative to ok.\n\nbody\n</skill>`,
    );
    expect(await expand([root], "/skill:ok", dirname(root))).toContain(
      `location="${basename(root)}/ok/SKILL.md">\nReferences are relative to ${basename(root)}/ok.`,
    );
    expect(await expand([root], "no command")).toBe("no command");
  });
});
