/**
 * Seeds a project directory from the operator's template (`PI_FLEET_PROJECT_TEMPLATE_DIR`) when a
 * worker creates it. Only the worker touches the workspace; only the project's lease holder
 * prepares its directory, and its SessionHost does so once.
 *
 * Once only: the template is copied into a hidden sibling (`.{project}.seeding-{uuid}`) that is
 * then renamed to the project dir, so the project dir appears complete or not at all, and a
 * project dir that exists (seeded, created before the template was configured, or filled by the
 * user) is never seeded again: not after a restart, not by another worker. A project dir removed
 * entirely (project purge) counts as new and is seeded again when it is next created.
 *
 * What is copied: regular files and directories, except entries named in
 * {@link TEMPLATE_SKIPPED_NAMES} at any depth; symlinks verbatim (never followed) only when their
 * target is relative and stays inside the template both lexically and after resolution, so the
 * copy points into the project itself; absolute or escaping symlinks, sockets, FIFOs and devices
 * are skipped. Permissions are kept, plus owner write (files) and owner rwx (directories) so the
 * agent can edit what was copied and a project purge can delete it.
 */
import { randomUUID } from "node:crypto";
import { constants } from "node:fs";
import { access, chmod, cp, lstat, mkdir, readdir, readlink, realpath, rename, rm } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve, sep } from "node:path";
import { ConfigError } from "@pi-fleet/config";

/**
 * Names never copied from the template, at any depth (directories or files): build outputs,
 * dependency trees and VCS metadata, which are large, machine-specific or rebuilt by the project.
 */
export const TEMPLATE_SKIPPED_NAMES: ReadonlySet<string> = new Set([
  "node_modules",
  ".git",
  "dist",
  "build",
  ".next",
  ".cache",
  "__pycache__",
  ".venv",
  "target",
]);

/** What {@link prepareProjectDir} did: found it, created it empty, or created it from the template. */
export type ProjectDirOutcome = "existed" | "created" | "seeded";

/**
 * Startup check of `PI_FLEET_PROJECT_TEMPLATE_DIR` (worker only: the gateway has no volume).
 * @throws ConfigError when the path is not absolute, cannot be read (`ENOENT`, `EACCES`, …), is
 *   not a directory, or overlaps `workspaceDir` (a template inside the workspace could be edited
 *   by an agent; a workspace inside the template would be copied into every project)
 */
export async function assertProjectTemplateDir(templateDir: string, workspaceDir: string): Promise<void> {
  const fail = (why: string): never => {
    throw new ConfigError(`invalid configuration: PI_FLEET_PROJECT_TEMPLATE_DIR ${why}`);
  };
  if (!isAbsolute(templateDir)) fail("must be an absolute path");
  const unreadable = (err: unknown): never =>
    fail(`cannot be read (${(err as NodeJS.ErrnoException).code ?? "unreadable"})`);
  const root = await realpath(templateDir).catch(unreadable);
  if (!(await lstat(root).catch(unreadable)).isDirectory()) fail("is not a directory");
  await access(root, constants.R_OK | constants.X_OK).catch(unreadable);
  const workspace = await realpath(workspaceDir).catch(() => resolve(workspaceDir));
  if (isWithin(root, workspace) || isWithin(workspace, root)) fail("must not overlap WORKSPACE_DIR");
}

/**
 * Makes sure `projectDir` exists; when it did not and `templateDir` is set, creates it as a copy
 * of the template (see the file header for what is copied). Idempotent and safe to call again
 * after a crash: a half-copied seed never becomes the project dir (a leftover hidden sibling may
 * remain and is harmless).
 * @param projectDir absolute path of the project dir (from WorkspacePaths)
 * @param templateDir absolute path of the template (validated by assertProjectTemplateDir)
 * @throws the fs error when the template cannot be copied (the project dir is then not created)
 */
export async function prepareProjectDir(
  projectDir: string,
  templateDir: string | undefined,
): Promise<ProjectDirOutcome> {
  if (await exists(projectDir)) return "existed";
  if (templateDir === undefined) {
    await mkdir(projectDir, { recursive: true });
    return "created";
  }
  const root = await realpath(templateDir);
  const parent = dirname(projectDir);
  await mkdir(parent, { recursive: true });
  const staging = join(parent, `.${basename(projectDir)}.seeding-${randomUUID()}`);
  try {
    await cp(root, staging, {
      recursive: true,
      verbatimSymlinks: true,
      force: false,
      errorOnExist: true,
      filter: (src) => keepEntry(root, src),
    });
    await makeOwnerWritable(staging);
    try {
      await rename(staging, projectDir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST" || code === "ENOTEMPTY") return "existed";
      throw err;
    }
    return "seeded";
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** cp filter: whether the template entry `src` is copied (the root always is). */
async function keepEntry(root: string, src: string): Promise<boolean> {
  if (src === root) return true;
  if (TEMPLATE_SKIPPED_NAMES.has(basename(src))) return false;
  const st = await lstat(src);
  if (st.isFile() || st.isDirectory()) return true;
  if (st.isSymbolicLink()) return symlinkStaysInside(root, src);
  return false;
}

/**
 * True when the symlink `link` (inside `root`) has a relative target inside `root`, lexically and
 * after resolving every link on the way (a dangling target only needs to be lexically inside).
 */
async function symlinkStaysInside(root: string, link: string): Promise<boolean> {
  const target = await readlink(link);
  if (isAbsolute(target) || !isWithin(root, resolve(dirname(link), target))) return false;
  try {
    return isWithin(root, await realpath(link));
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ENOENT";
  }
}

/** Adds owner write to every copied file and owner rwx to every directory (symlinks untouched). */
async function makeOwnerWritable(dir: string): Promise<void> {
  const st = await lstat(dir);
  await chmod(dir, st.mode | 0o700);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await makeOwnerWritable(path);
    else if (entry.isFile()) await chmod(path, (await lstat(path)).mode | 0o200);
  }
}

function isWithin(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}
