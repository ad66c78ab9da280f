// The resource policy through openSession: operator and project skills and prompt templates load as
// text (listed by get_commands, skills named in the system prompt), symlinks out of their roots are
// dropped, the PI_NO_* switches turn each kind off, and only the project's own AGENTS.md reaches
// the prompt even when the loader is pi's DefaultResourceLoader.
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fauxAssistantMessage, type TranscriptContext } from "@earendil-works/pi-ai";
import { describe, expect, it } from "vitest";
import { openSession, type ResourcePolicy } from "../src/index.ts";
import { fauxRuntime, onCleanup, recordingSink, sessionDirs, tempDir } from "./helpers.ts";

async function put(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
}

const skill = (name: string, description: string) =>
  `---\nname: ${name}\ndescription: ${description}\n---\n\nSteps of ${name}.\n`;
const prompt = (description: string) => `---\ndescription: ${description}\n---\n\nReview $1 carefully.\n`;

/** Operator dirs, a project with skills/prompts (plus symlinks escaping it), and an outside dir. */
async function fixture() {
  const dirs = await sessionDirs();
  const operator = await tempDir("pf-op-");
  const outside = await tempDir("pf-outside-");
  await put(join(operator, "skills", "op-skill", "SKILL.md"), skill("op-skill", "Operator skill"));
  await put(join(operator, "prompts", "op-review.md"), prompt("Operator prompt"));
  await put(
    join(dirs.projectDir, ".pi", "skills", "proj-skill", "SKILL.md"),
    skill("proj-skill", "Project skill"),
  );
  await put(join(dirs.projectDir, ".pi", "prompts", "proj-review.md"), prompt("Project prompt"));
  await put(join(outside, "stolen", "SKILL.md"), skill("stolen", "Another tenant's skill"));
  await put(join(outside, "secret.md"), prompt("Another tenant's prompt"));
  await symlink(join(outside, "stolen"), join(dirs.projectDir, ".pi", "skills", "stolen"));
  await symlink(join(outside, "secret.md"), join(dirs.projectDir, ".pi", "prompts", "secret.md"));
  // Context files: the project's own is used; its parent's (the org dir) never.
  await put(join(dirs.projectDir, "AGENTS.md"), "PROJECT-RULES-MARKER\n");
  await put(join(dirname(dirs.projectDir), "AGENTS.md"), "ORG-RULES-MARKER\n");
  return { dirs, operator, outside };
}

async function commandsOf(policy: ResourcePolicy, dirs: Awaited<ReturnType<typeof sessionDirs>>) {
  const { runtime, faux } = await fauxRuntime();
  let systemPrompt = "";
  faux.setResponses([
    (context: TranscriptContext) => {
      // The system prompt travels as the transcript's system message(s).
      systemPrompt = JSON.stringify(context.messages);
      return fauxAssistantMessage("ok");
    },
  ]);
  const session = await openSession({ runtime, ...dirs, ...policy });
  onCleanup(() => session.dispose());
  const result = await session.command({ type: "get_commands" });
  expect(result.success).toBe(true);
  const names = ((result as { data: { commands: { name: string; source: string }[] } }).data.commands ?? [])
    .map((c) => `${c.source}:${c.name}`)
    .sort();
  await session.run("hi", {}, recordingSink().sink);
  return { names, systemPrompt };
}

describe("resource policy", () => {
  it("loads operator and project skills and prompts as text, never through symlinks out of their roots", async () => {
    const { dirs, operator } = await fixture();
    const { names, systemPrompt } = await commandsOf(
      { skillPaths: [join(operator, "skills")], promptPaths: [join(operator, "prompts")] },
      dirs,
    );
    expect(names).toEqual([
      "prompt:op-review",
      "prompt:proj-review",
      "skill:skill:op-skill",
      "skill:skill:proj-skill",
    ]);
    expect(systemPrompt).toContain("op-skill");
    expect(systemPrompt).toContain("proj-skill");
    expect(systemPrompt).not.toContain("stolen");
    expect(systemPrompt).toContain("PROJECT-RULES-MARKER");
    expect(systemPrompt).not.toContain("ORG-RULES-MARKER");
  });

  it("loads the project's skills and prompts without any operator path", async () => {
    const { dirs } = await fixture();
    const { names } = await commandsOf({}, dirs);
    expect(names).toEqual(["prompt:proj-review", "skill:skill:proj-skill"]);
  });

  it("turns each kind off with noSkills / noPromptTemplates / noExtensions", async () => {
    const { dirs, operator } = await fixture();
    const paths = { skillPaths: [join(operator, "skills")], promptPaths: [join(operator, "prompts")] };
    expect((await commandsOf({ ...paths, noSkills: true }, dirs)).names).toEqual([
      "prompt:op-review",
      "prompt:proj-review",
    ]);
    expect((await commandsOf({ ...paths, noPromptTemplates: true }, dirs)).names).toEqual([
      "skill:skill:op-skill",
      "skill:skill:proj-skill",
    ]);
    const none = await commandsOf(
      {
        ...paths,
        noSkills: true,
        noPromptTemplates: true,
        noExtensions: true,
        extensionPaths: ["/nonexistent.ts"],
      },
      dirs,
    );
    expect(none.names).toEqual([]);
    expect(none.systemPrompt).toContain("PROJECT-RULES-MARKER");
  });

  it("ignores a project .pi/skills that is itself a symlink out of the project", async () => {
    const dirs = await sessionDirs();
    const outside = await tempDir("pf-outside-");
    await put(join(outside, "stolen", "SKILL.md"), skill("stolen", "Another tenant's skill"));
    await mkdir(join(dirs.projectDir, ".pi"), { recursive: true });
    await symlink(outside, join(dirs.projectDir, ".pi", "skills"));
    expect((await commandsOf({}, dirs)).names).toEqual([]);
  });
});
