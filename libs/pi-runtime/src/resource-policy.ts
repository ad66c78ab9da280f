// Which extensions, skills and prompt templates a session loads (the resource policy), and the pi
// ResourceLoader that loads exactly those. Operator paths are trusted code and text; a project's
// `.pi/skills` and `.pi/prompts` are tenant text; a project's `.pi/extensions` is tenant code and
// loads only when the org is trusted. pi's DefaultResourceLoader does the loading, in the safe
// configuration of pi-sdk.md §2: every discovery switched off (no `.pi/settings.json` packages or
// npmCommand, no agentDir or home resources, no context files from ancestors, no SYSTEM.md), only
// the explicit paths given (hazards H1, H2). Without any path the discover-nothing loader is used.
import { realpathSync } from "node:fs";
import { readdir, realpath, stat } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve, sep } from "node:path";
import {
  DefaultResourceLoader,
  type ResourceLoader,
  type SettingsManager,
} from "@earendil-works/pi-coding-agent";
import { confineProjectResources } from "./confined-resources.ts";
import { firstLine } from "./errors.ts";
import { publicExtensionPath, withoutProjectDir } from "./extension-ui.ts";
import type { AgentsFile } from "./project-context.ts";
import { createIsolatedResourceLoader } from "./resource-loader.ts";
import type { ResourcePolicy } from "./types.ts";

/** Inputs of {@link createPolicyResourceLoader}. */
export interface PolicyLoaderParts {
  policy: ResourcePolicy;
  /** Absolute; the session's cwd. */
  projectDir: string;
  /** The worker-private, empty agent dir. */
  agentDir: string;
  /** The session's in-memory, untrusted settings (never file settings: hazard H1). */
  settingsManager: SettingsManager;
  /** The project context files (the project's own AGENTS.md), the only ones pi sees. */
  agentsFiles: readonly AgentsFile[];
}

/** A loader and the project extensions that failed to load (reported, not fatal). */
export interface PolicyLoader {
  loader: ResourceLoader;
  /** Load errors of project (tenant) extensions, with project-relative paths. */
  projectErrors: { path: string; error: string }[];
  /** Real paths skills were loaded from: a skill file read later must still lie in one (skill-command.ts). */
  skillRoots: string[];
  /**
   * The real paths the read-only file tools may read besides the project
   * (confined-file-operations.ts `readOnlyRoots`), because pi lists each loaded skill to the model
   * by its absolute path and tells it to `read` it; none with `noSkills`:
   * - the operator's skill paths (`policy.skillPaths`, i.e. PI_SKILL_PATHS; missing ones left out);
   * - for the skills pi loaded from an operator extension package (PI_EXTENSION_PATHS: a
   *   package's `pi.skills` manifest entries or its `skills/` dir), told apart by the path pi
   *   found them at (a project skill never counts, whatever its symlinks lead to): a SKILL.md's
   *   real dir, only when it lies strictly below its package's real root (a SKILL.md at the
   *   package root opens nothing: it stays listed but unreadable); any other skill file (a flat
   *   `skills/<name>.md`) by itself, never its dir. The rest of a package (its code, package.json,
   *   config, skills its manifest excludes) stays unreadable: see {@link packageSkillRoots}.
   */
  operatorSkillRoots: string[];
}

/**
 * Builds and loads the session's ResourceLoader. Extensions are compiled and their factories run
 * here (pi's jiti loader, cached per cwd). Skills and prompt templates are read as text; any
 * whose real path escapes its root (a symlink out of the project) is dropped. pi loads the skills
 * and prompt templates an operator extension package declares (its `pi.skills` / `pi.prompts`
 * manifest entries, or its `skills/` / `prompts/` dir without a manifest) with the extension;
 * `noSkills` / `noPromptTemplates` drop those too.
 * @throws TypeError when an operator path is not absolute; Error when an operator extension is
 *   missing or fails to load (fail closed: a permission gate that did not load must not be skipped)
 */
export async function createPolicyResourceLoader(parts: PolicyLoaderParts): Promise<PolicyLoader> {
  const { policy, projectDir } = parts;
  for (const [name, paths] of [
    ["extensionPaths", policy.extensionPaths],
    ["skillPaths", policy.skillPaths],
    ["promptPaths", policy.promptPaths],
  ] as const) {
    for (const path of paths ?? []) {
      if (!isAbsolute(path)) throw new TypeError(`${name} must hold absolute paths: ${path}`);
    }
  }
  const operatorExtensions = policy.noExtensions ? [] : [...(policy.extensionPaths ?? [])];
  const projectExtensions =
    policy.noExtensions || !policy.trustProjectExtensions ? [] : await projectExtensionEntries(projectDir);
  const projectSkills = policy.noSkills ? undefined : await projectResourceDir(projectDir, "skills");
  const projectPrompts = policy.noPromptTemplates
    ? undefined
    : await projectResourceDir(projectDir, "prompts");
  const skillPaths = policy.noSkills ? [] : [...(policy.skillPaths ?? []), ...present(projectSkills)];
  const promptPaths = policy.noPromptTemplates
    ? []
    : [...(policy.promptPaths ?? []), ...present(projectPrompts)];
  const extensionPaths = [...operatorExtensions, ...projectExtensions];
  if (extensionPaths.length === 0 && skillPaths.length === 0 && promptPaths.length === 0) {
    return {
      loader: createIsolatedResourceLoader(parts.agentsFiles),
      projectErrors: [],
      skillRoots: [],
      operatorSkillRoots: [],
    };
  }

  // Skills and prompts may come from these roots only (operator packages may carry their own).
  // pi loads a package's skills and prompt templates even with its own noSkills /
  // noPromptTemplates set (they come with the extension path), so `noSkills` /
  // `noPromptTemplates` leave no root at all: skillsOverride / promptsOverride then drop every one.
  // (A package's themes load too; themesOverride drops them all, always.)
  const skillRoots = policy.noSkills
    ? []
    : realRoots([...(policy.skillPaths ?? []), ...operatorExtensions, ...present(projectSkills)]);
  const promptRoots = policy.noPromptTemplates
    ? []
    : realRoots([...(policy.promptPaths ?? []), ...operatorExtensions, ...present(projectPrompts)]);
  const agentsFiles = parts.agentsFiles.map((f) => ({ path: f.path, content: f.content }));
  const loader = new DefaultResourceLoader({
    cwd: projectDir,
    agentDir: parts.agentDir,
    settingsManager: parts.settingsManager,
    additionalExtensionPaths: extensionPaths,
    additionalSkillPaths: skillPaths,
    additionalPromptTemplatePaths: promptPaths,
    // Discovery off: only the additional paths above load (inline factories would, too).
    noExtensions: true,
    noSkills: true,
    noPromptTemplates: true,
    noThemes: true,
    noContextFiles: true,
    // No SYSTEM.md / APPEND_SYSTEM.md discovery: pi's default prompt, as with the isolated loader.
    systemPromptOverride: () => undefined,
    appendSystemPrompt: [],
    agentsFilesOverride: () => ({ agentsFiles: agentsFiles.map((f) => ({ ...f })) }),
    themesOverride: () => ({ themes: [], diagnostics: [] }),
    skillsOverride: (base) => ({
      skills: base.skills.filter((s) => within(s.filePath, skillRoots)),
      diagnostics: base.diagnostics,
    }),
    promptsOverride: (base) => ({
      prompts: base.prompts.filter((p) => within(p.filePath, promptRoots)),
      diagnostics: base.diagnostics,
    }),
  });
  await loader.reload();
  // pi read the files following symlinks before the root checks above: re-read the project's.
  await confineProjectResources(loader, projectDir);

  const projectRoot = `${projectDir}${sep}`;
  const projectErrors: { path: string; error: string }[] = [];
  for (const e of loader.getExtensions().errors) {
    const path = publicExtensionPath(e.path, projectDir);
    if (e.path.startsWith(projectRoot))
      projectErrors.push({ path, error: withoutProjectDir(e.error, projectDir) });
    else throw new Error(`Operator extension ${path} did not load: ${firstLine(e.error)}`);
  }
  const operatorSkillRoots = policy.noSkills
    ? []
    : [
        ...realRoots(policy.skillPaths ?? []),
        ...packageSkillRoots(loader.getSkills().skills, operatorExtensions, projectDir),
      ];
  return { loader, projectErrors, skillRoots, operatorSkillRoots };
}

/** pi's name of a skill file that makes its dir the skill's (core/skills.js). */
const SKILL_FILE = "SKILL.md";

/** The part of pi's `Skill` that {@link packageSkillRoots} reads. */
interface LoadedSkill {
  /**
   * Absolute path of the skill's file (a SKILL.md, or a flat `<name>.md` at the top of a skills
   * dir, or one a manifest names), as pi found it: not resolved (below the path pi was given).
   */
  filePath: string;
}

/**
 * The real paths the read-only file tools may read for the `skills` (what pi loaded and the
 * policy kept) that came from an operator extension package, in pi's skill order, deduplicated.
 *
 * Which skills came from a package is decided on the path as pi found it, never on a real path: a
 * skill is a candidate only when its `filePath` lies strictly below an `extensionPaths` entry (as
 * given, not resolved) and not in the project. A project skill (tenant text, under
 * `<projectDir>/.pi/skills`) is therefore never one, even when the tenant's bash swaps it for a
 * symlink into a package (a manifest-excluded dir, say) at any moment of the load: the project's
 * paths are never resolved here. pi's `Skill.sourceInfo` cannot tell: a package's skills get
 * `{source: "cli", scope: "temporary"}`, naming no package, from the same unresolved prefix match.
 *
 * A candidate's file is resolved once (realpath; the package, operator-owned, is all that lies
 * behind that path) and must still lie strictly below the real path of an entry it was found
 * under. What opens:
 * - for a file named SKILL.md (both as pi found it and as real path), its real dir
 *   (`dirname(realFile)`, never a second realpath), when that lies strictly below the same
 *   package's real root: a SKILL.md at the package root opens nothing (the root would open the
 *   package's code, package.json, config; the skill stays listed but unreadable);
 * - for any other skill file (a flat `skills/quick.md`), that real file alone: its dir is the
 *   package's skills dir, holding other skills, manifest-excluded ones included.
 * Never a path in the project, nor a dir that contains the project (other projects) or is or
 * contains an extension root (nested PI_EXTENSION_PATHS entries); a file that no longer resolves
 * opens nothing.
 */
function packageSkillRoots(
  skills: readonly LoadedSkill[],
  extensionPaths: readonly string[],
  projectDir: string,
): string[] {
  const packages: { path: string; real: string }[] = [];
  for (const path of extensionPaths) {
    try {
      packages.push({ path: resolve(path), real: realpathSync(path) });
    } catch {
      // missing: nothing loaded from it
    }
  }
  if (packages.length === 0) return [];
  const project = resolve(projectDir);
  let realProject: string;
  try {
    realProject = realpathSync(project);
  } catch {
    return [];
  }
  const roots: string[] = [];
  for (const skill of skills) {
    const path = resolve(skill.filePath);
    // As pi found it: tenant paths are no candidates (nothing of the project is resolved here).
    if (inside(path, project)) continue;
    const from = packages.filter((p) => below(path, p.path));
    if (from.length === 0) continue;
    let file: string;
    try {
      file = realpathSync(path);
    } catch {
      continue;
    }
    const root = basename(path) === SKILL_FILE && basename(file) === SKILL_FILE ? dirname(file) : file;
    // Strictly below the real root of a package it was found under (so is the file).
    if (!from.some((p) => below(root, p.real))) continue;
    // Tenant text, or a dir that would open the project's parents (other projects).
    if (inside(file, realProject) || inside(root, realProject) || below(realProject, root)) continue;
    // Never a package root itself nor one containing another (nested PI_EXTENSION_PATHS entries).
    if (packages.some((p) => inside(p.real, root)) || roots.includes(root)) continue;
    roots.push(root);
  }
  return roots;
}

/**
 * The project's extension entry points, as pi discovers them in `.pi/extensions`: every `.ts` /
 * `.js` file, and every subdirectory's `index.ts` / `index.js`. Empty when the dir is missing.
 */
async function projectExtensionEntries(projectDir: string): Promise<string[]> {
  const dir = join(projectDir, ".pi", "extensions");
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch {
    return [];
  }
  const entries: string[] = [];
  for (const name of names) {
    if (name.startsWith(".")) continue;
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (info?.isFile() && (name.endsWith(".ts") || name.endsWith(".js"))) entries.push(path);
    else if (info?.isDirectory()) {
      for (const index of ["index.ts", "index.js"]) {
        if ((await stat(join(path, index)).catch(() => undefined))?.isFile()) {
          entries.push(join(path, index));
          break;
        }
      }
    }
  }
  return entries;
}

/**
 * `<projectDir>/.pi/<kind>` when it is a directory whose real path lies inside the project's real
 * path (a symlink pointing elsewhere, e.g. at another tenant's project, is ignored); else undefined.
 */
async function projectResourceDir(
  projectDir: string,
  kind: "skills" | "prompts",
): Promise<string | undefined> {
  const dir = join(projectDir, ".pi", kind);
  try {
    const [real, root] = await Promise.all([realpath(dir), realpath(projectDir)]);
    if (!real.startsWith(`${root}${sep}`)) return undefined;
    return (await stat(real)).isDirectory() ? dir : undefined;
  } catch {
    return undefined;
  }
}

function present(path: string | undefined): string[] {
  return path === undefined ? [] : [path];
}

/** Real paths of the roots that exist. */
function realRoots(paths: readonly string[]): string[] {
  const roots: string[] = [];
  for (const p of paths) {
    try {
      roots.push(realpathSync(p));
    } catch {
      // missing: nothing can load from it
    }
  }
  return roots;
}

/** True when `path` lies strictly below `root` (never `root` itself); both absolute and normalized. */
function below(path: string, root: string): boolean {
  return path.startsWith(root.endsWith(sep) ? root : `${root}${sep}`) && path !== root;
}

/** True when `path` is `root` or lies below it; both absolute and normalized (no file system). */
function inside(path: string, root: string): boolean {
  return path === root || below(path, root);
}

/** True when `path`'s real path is one of `roots` or lies below one. */
function within(path: string, roots: readonly string[]): boolean {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    return false;
  }
  return roots.some((root) => real === root || real.startsWith(root.endsWith(sep) ? root : `${root}${sep}`));
}
