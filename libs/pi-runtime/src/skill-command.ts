// `/skill:name args` through the API. pi's RPC mode expands it into the skill's text
// (AgentSession._expandSkillCommand) by reading the skill file in the worker process at that
// moment, following symlinks: a project SKILL.md that the agent swapped for a symlink after the
// session opened would be read wherever it points (another tenant's project, the worker's secret
// files), outside the bash sandbox. Here the file is read through the project's confinement
// (ProjectConfinement: real path inside a root, opened without following symlinks at open time),
// with the skill roots the session loaded its skills from as the roots; then the text is expanded
// in pi's format, so pi sees no `/skill:` left. pi's block names the skill file's absolute path
// (`location`, and the directory references are relative to); the block becomes the user
// message, which goes out in the run's events, the persisted history and exports. So the block
// names paths as the tenant may see them: relative to the project for a project skill (the
// model's file tools resolve relative paths against the project dir, so it reads the skill's
// references there as before), the skill's directory and file names for an operator skill.
import { constants } from "node:fs";
import { basename, relative, sep } from "node:path";
import { stripFrontmatter } from "@earendil-works/pi-coding-agent";
import { PathEscapeError, ProjectConfinement } from "./confined-file-operations.ts";

/** Largest skill file expanded (bytes); pi's own limit is none. */
export const SKILL_FILE_MAX_BYTES = 256 * 1024;

/** The part of pi's `Skill` (resource loader) the expansion reads. */
export interface SkillRef {
  name: string;
  /** Absolute path of the SKILL.md / .md file, as pi loaded it. */
  filePath: string;
  /** The directory the skill's references are relative to. */
  baseDir: string;
}

/** A known skill whose file cannot be read inside its roots (moved out, replaced, too large). */
export class SkillReadError extends Error {
  constructor(name: string, reason: string) {
    super(`skill ${name}: ${reason}`);
    this.name = "SkillReadError";
  }
}

/**
 * Expands `text` when it is `/skill:<name>[ args]` naming one of `skills`; any other text (and an
 * unknown skill name) is returned unchanged, as pi does. The result has pi's shape:
 * `<skill name="…" location="…">\nReferences are relative to ….\n\n<body>\n</skill>` followed by
 * a blank line and the args, if any, with the paths of {@link shownSkillPaths} (no server path).
 * @param roots real paths the skill file must lie in (the session's skill roots; see
 *   resource-policy.ts); empty = no skill can be read
 * @param projectDir the session's project dir (absolute): project skills are named relative to it
 * @throws SkillReadError when the skill exists but its file lies outside `roots` (by real path, at
 *   the moment it is read: a symlink is followed only to a target inside a root), is not a regular
 *   file, cannot be read or exceeds {@link SKILL_FILE_MAX_BYTES}
 */
export async function expandSkillCommand(
  skills: readonly SkillRef[],
  roots: readonly string[],
  text: string,
  projectDir: string,
): Promise<string> {
  if (!text.startsWith("/skill:")) return text;
  const space = text.indexOf(" ");
  const name = space === -1 ? text.slice(7) : text.slice(7, space);
  const args = space === -1 ? "" : text.slice(space + 1).trim();
  const skill = skills.find((s) => s.name === name);
  if (!skill) return text;
  const body = stripFrontmatter(await readConfined(skill, roots)).trim();
  const shown = shownSkillPaths(skill, projectDir);
  const block = `<skill name="${skill.name}" location="${shown.location}">\nReferences are relative to ${shown.baseDir}.\n\n${body}\n</skill>`;
  return args ? `${block}\n\n${args}` : block;
}

/** How an operator skill's directory is named to the model (not a path in the project). */
export const OPERATOR_SKILL_PREFIX = "operator-skill:";

/**
 * The skill's file (`location`) and directory (`baseDir`) as the expansion names them: relative
 * to `projectDir` when the skill lies in the project (`.pi/skills/deploy/SKILL.md`,
 * `.pi/skills/deploy`), else {@link OPERATOR_SKILL_PREFIX} and the base names of its directory and
 * file (`operator-skill:review/SKILL.md`, `operator-skill:review`): an operator skill's server
 * path stays out of the user message (the model still has it from pi's skill list in its system
 * prompt, where its `read` tool may read: confined-file-operations.ts), and the prefix keeps the
 * model from resolving the skill's references against the project's own same-named files.
 */
export function shownSkillPaths(skill: SkillRef, projectDir: string): { location: string; baseDir: string } {
  const inProject = (path: string) => {
    const rel = relative(projectDir, path);
    return rel !== "" && rel !== ".." && !rel.startsWith(`..${sep}`) && !rel.startsWith(sep)
      ? rel
      : undefined;
  };
  const location = inProject(skill.filePath);
  const baseDir = inProject(skill.baseDir);
  if (location !== undefined && baseDir !== undefined) return { location, baseDir };
  const dir = `${OPERATOR_SKILL_PREFIX}${basename(skill.baseDir)}`;
  return { location: `${dir}/${basename(skill.filePath)}`, baseDir: dir };
}

async function readConfined(skill: SkillRef, roots: readonly string[]): Promise<string> {
  for (const root of roots) {
    // The project's own jail (confined-file-operations.ts): the real path must stay in the root,
    // and the file is opened without following a symlink at open time.
    let handle: Awaited<ReturnType<ProjectConfinement["open"]>>;
    try {
      handle = await new ProjectConfinement(root).open(skill.filePath, constants.O_RDONLY);
    } catch (err) {
      if (err instanceof PathEscapeError) continue; // maybe another root's
      const code = (err as NodeJS.ErrnoException).code;
      throw new SkillReadError(
        skill.name,
        code === "EISDIR" || code === "ENOTSUP" ? "not a regular file" : "cannot be read",
      );
    }
    try {
      const { size } = await handle.stat();
      if (size > SKILL_FILE_MAX_BYTES)
        throw new SkillReadError(skill.name, `larger than ${SKILL_FILE_MAX_BYTES} bytes`);
      const buffer = Buffer.alloc(size);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      return new TextDecoder("utf-8").decode(buffer.subarray(0, bytesRead));
    } finally {
      await handle.close().catch(() => {});
    }
  }
  throw new SkillReadError(skill.name, "the skill file lies outside its skill directory");
}
