// pi loads skill and prompt template files with readFileSync, which follows symlinks, and the
// resource policy's root check (a realpath) can only run afterwards. An agent that swaps a project
// file between a symlink and a plain file while another session of its project loads could get pi
// to read any file the worker can read (a prompt template's text goes into the conversation, a
// skill's description into the system prompt) while the check sees the plain file. Every project
// resource pi loaded is therefore read again through the project's confinement (real path inside
// the project, no symlink followed at open time: confined-file-operations.ts) and kept only when
// what pi read matches that read. Operator resources (outside the project) are trusted as loaded.
import { constants } from "node:fs";
import { basename, dirname, sep } from "node:path";
import { parseFrontmatter, type ResourceLoader } from "@earendil-works/pi-coding-agent";
import { ProjectConfinement } from "./confined-file-operations.ts";
import { SKILL_FILE_MAX_BYTES } from "./skill-command.ts";

type Skill = ReturnType<ResourceLoader["getSkills"]>["skills"][number];
type Prompt = ReturnType<ResourceLoader["getPrompts"]>["prompts"][number];

/**
 * Re-checks the project skills and prompt templates `loader` loaded (see the module comment) and
 * makes its `getSkills()` / `getPrompts()` answer only those that passed, from now on. Call after
 * `loader.reload()`. Never throws: a resource that cannot be read again is dropped.
 */
export async function confineProjectResources(loader: ResourceLoader, projectDir: string): Promise<void> {
  const jail = new ProjectConfinement(projectDir);
  const inProject = (path: string) => path.startsWith(`${projectDir}${sep}`);
  const skills = loader.getSkills();
  const prompts = loader.getPrompts();
  const keptSkills: Skill[] = [];
  for (const skill of skills.skills) {
    if (!inProject(skill.filePath) || skillMatches(skill, await readConfined(jail, skill.filePath)))
      keptSkills.push(skill);
  }
  const keptPrompts: Prompt[] = [];
  for (const prompt of prompts.prompts) {
    if (!inProject(prompt.filePath) || promptMatches(prompt, await readConfined(jail, prompt.filePath)))
      keptPrompts.push(prompt);
  }
  const skillResult = { skills: keptSkills, diagnostics: skills.diagnostics };
  const promptResult = { prompts: keptPrompts, diagnostics: prompts.diagnostics };
  loader.getSkills = () => skillResult;
  loader.getPrompts = () => promptResult;
}

/** The file's text read through the confinement; undefined when it escapes, is no file or too big. */
async function readConfined(jail: ProjectConfinement, path: string): Promise<string | undefined> {
  try {
    const handle = await jail.open(path, constants.O_RDONLY);
    try {
      const { size } = await handle.stat();
      if (size > SKILL_FILE_MAX_BYTES) return undefined;
      return (await handle.readFile()).toString("utf8");
    } finally {
      await handle.close().catch(() => undefined);
    }
  } catch {
    return undefined;
  }
}

/** pi's skill fields (core/skills.js `loadSkillFromFile`: name from the frontmatter or the dir). */
function skillMatches(skill: Skill, text: string | undefined): boolean {
  if (text === undefined) return false;
  try {
    const { frontmatter } = parseFrontmatter<Record<string, unknown>>(text);
    const name =
      typeof frontmatter.name === "string" && frontmatter.name
        ? frontmatter.name
        : basename(dirname(skill.filePath));
    return frontmatter.description === skill.description && name === skill.name;
  } catch {
    return false;
  }
}

/** pi's template text (core/prompt-templates.js `loadTemplateFromFile`: the body after the frontmatter). */
function promptMatches(prompt: Prompt, text: string | undefined): boolean {
  if (text === undefined) return false;
  try {
    return parseFrontmatter(text).body === prompt.content;
  } catch {
    return false;
  }
}
