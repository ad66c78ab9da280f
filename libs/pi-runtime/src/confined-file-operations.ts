// Keeps pi's file tools inside the project dir (hazard H4: they accept absolute, `~` and `..`
// paths), except that the read-only tools (read, ls, grep, find) may also read inside the
// session's operator skill roots: pi lists each loaded skill in the system prompt by its absolute
// path and tells the model to `read` it, and operator skills live outside the project (the
// PI_SKILL_PATHS entries, and the skill dirs, or flat skill files, of operator extension packages
// but never the rest of a package: resource-policy.ts `operatorSkillRoots`). A root may be a
// single file: then that file alone is readable, nothing beside or below it. write and edit reach
// the project dir only.
// pi resolves the model's path against the cwd (the project dir) and hands the absolute result to
// its `*Operations`; the operations here refuse anything whose real location (realpath of the
// deepest existing ancestor, plus the missing tail) is outside the roots its access allows
// (project real path; for reads also the read-only roots' real paths), so `..` escapes, absolute
// paths elsewhere and symlinks (dangling ones included) that point outside all fail with
// "Path escapes the project directory: …".
//
// Check-then-use races (a symlink swapped in between, by the agent's own bash) are narrowed by
// opening through the kernel instead of the path: the parent directory is opened, its real path
// is read back from /proc/self/fd and checked, and the file is opened relative to that open
// directory (`/proc/self/fd/<dirfd>/<name>`, the openat idiom) with O_NOFOLLOW, so neither the
// final component nor a swapped ancestor can redirect the open. A root itself is opened by its
// real path with O_NOFOLLOW and re-checked through its descriptor. Residual risks: without /proc
// (non-Linux) the path is opened directly with O_NOFOLLOW only; a hard link inside the project
// to an outside file is followed (creating one needs access to the outside file, which only
// unsandboxed bash has); `grep` runs rg and `find` walks by path below a checked root, neither
// following symlinks, so a directory swapped for a link mid-walk is the race left there; `access`
// and `stat` checks are advisory (the open decides).
import { constants, existsSync, type Stats } from "node:fs";
import { access, type FileHandle, lstat, mkdir, open, readdir, readlink, realpath } from "node:fs/promises";
import { homedir } from "node:os";
import { basename, dirname, isAbsolute, join, matchesGlob, relative, resolve, sep } from "node:path";
import {
  createEditToolDefinition,
  createFindToolDefinition,
  createGrepToolDefinition,
  createLsToolDefinition,
  createReadToolDefinition,
  createWriteToolDefinition,
  defineTool,
  detectSupportedImageMimeTypeFromFile,
  type EditOperations,
  type FindOperations,
  type GrepOperations,
  type LsOperations,
  type ReadOperations,
  type ToolDefinition,
  type WriteOperations,
} from "@earendil-works/pi-coding-agent";

/** Thrown (and shown to the model) when a path leads outside the roots its access may reach. */
export class PathEscapeError extends Error {
  override readonly name = "PathEscapeError";
}

/** Symlink hops followed while resolving one path (the kernel's own limit is 40). */
const MAX_LINK_HOPS = 40;
const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND, O_NOFOLLOW, O_NONBLOCK, O_DIRECTORY } =
  constants;
/** Open flags that can change the file system: an open with any of them needs "write" access. */
const WRITE_FLAGS = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND;
/** Whether /proc/self/fd works (Linux); checked once. */
const HAVE_PROC_FD = existsSync("/proc/self/fd");

/**
 * What an operation does with a path: "read" may reach the project and the read-only roots,
 * "write" (create, change, mkdir) the project only.
 */
export type FileAccess = "read" | "write";

/** Where a path really lands: the real path of its deepest existing ancestor plus the rest. */
export interface ResolvedPath {
  /** Real path of the deepest existing ancestor (inside a root the access may reach). */
  existing: string;
  /** Components below `existing` that do not exist (yet). */
  tail: string[];
  /** `existing` joined with `tail`. */
  full: string;
}

/**
 * The project dir as a jail for file operations, the one writable root, plus optional read-only
 * roots (the session's operator skill dirs) that reads may also reach (with the project: the
 * readable roots). Paths given to it are absolute (pi resolves the model's input first); relative
 * ones resolve against the project dir.
 */
export class ProjectConfinement {
  /** The project dir as configured (what pi resolves paths against). */
  readonly root: string;
  /** Real paths that reads (never writes) may also reach; see the constructor. */
  readonly readOnlyRoots: readonly string[];
  #realRoot: Promise<string> | undefined;

  /**
   * @param projectDir absolute project dir (it must exist by the time a tool runs)
   * @param readOnlyRoots absolute real paths (dirs, or single files) readable besides the project;
   *   one that is not a real path fails closed (nothing below it resolves inside it), and one that
   *   is the project dir or contains it is ignored (it would open other projects). Default none.
   */
  constructor(projectDir: string, readOnlyRoots: readonly string[] = []) {
    this.root = resolve(projectDir);
    this.readOnlyRoots = readOnlyRoots.map((r) => resolve(r));
  }

  /** The project dir's real path (resolved once it succeeded). */
  realRoot(): Promise<string> {
    this.#realRoot ??= realpath(this.root).catch((err: unknown) => {
      this.#realRoot = undefined;
      throw err;
    });
    return this.#realRoot;
  }

  /**
   * How a path appears in messages to the model, never naming server paths it did not write:
   * inside the project relative to it (`.` for the project itself); outside it, relative to the
   * project when they share more than `/` (`../secret.txt`), under the worker's home as `~/…`,
   * otherwise absolute (`/etc/passwd`, as the model wrote it).
   */
  display(path: string): string {
    const target = resolve(this.root, path);
    const rel = relative(this.root, target);
    if (rel === "") return ".";
    if (!isOutside(rel)) return rel;
    const home = homedir();
    if (home !== "/" && isInside(target, home)) return `~/${relative(home, target)}`;
    const commonTop = this.root.split(sep)[1];
    return commonTop !== undefined && target.split(sep)[1] === commonTop ? rel : target;
  }

  /** Real paths `access` may reach: the project's first; for "read" the read-only roots after it. */
  async #roots(access: FileAccess): Promise<string[]> {
    const realRoot = await this.realRoot();
    if (access === "write") return [realRoot];
    return [realRoot, ...this.readOnlyRoots.filter((r) => !isInside(realRoot, r))];
  }

  /**
   * Resolves where `path` really lands (symlinks followed, dangling ones included) and checks
   * it is a root `access` may reach or below one (only the project dir for "write").
   * @throws PathEscapeError
   */
  async resolve(path: string, access: FileAccess): Promise<ResolvedPath> {
    const roots = await this.#roots(access);
    const target = resolve(this.root, path);
    let existing = target;
    let tail: string[] = [];
    let hops = 0;
    for (;;) {
      try {
        existing = await realpath(existing);
        break;
      } catch (err) {
        if (!isMissing(err)) throw this.fsError(err, target);
      }
      const st = await lstat(existing).catch(() => undefined);
      if (st?.isSymbolicLink()) {
        // A dangling symlink: writing through it would create its target, wherever that is.
        if (++hops > MAX_LINK_HOPS)
          throw new PathEscapeError(`Too many levels of symbolic links: ${this.display(target)}`);
        const link = await readlink(existing).catch((err: unknown) => {
          throw this.fsError(err, target);
        });
        existing = resolve(dirname(existing), link);
        continue;
      }
      const parent = dirname(existing);
      if (parent === existing) break;
      tail = [basename(existing), ...tail];
      existing = parent;
    }
    const full = join(existing, ...tail);
    if (!roots.some((root) => isInside(full, root))) {
      const viaLink =
        target !== full && (isInside(target, this.root) || roots.some((r) => isInside(target, r)));
      throw this.escape(target, viaLink);
    }
    return { existing, tail, full };
  }

  /** PathEscapeError for `target`; `viaLink` adds that a symlink is what leads outside. */
  escape(target: string, viaLink: boolean): PathEscapeError {
    return new PathEscapeError(
      `Path escapes the project directory: ${this.display(target)}${viaLink ? " (a symlink leads outside it)" : ""}`,
    );
  }

  /**
   * An fs error re-worded with the displayed path instead of server paths, keeping `code` (pi's
   * edit tool prints "Error code: <code>"). PathEscapeErrors pass through.
   */
  fsError(err: unknown, path: string): Error {
    if (err instanceof PathEscapeError) return err;
    const e = err as NodeJS.ErrnoException;
    if (typeof e?.code !== "string") return err instanceof Error ? err : new Error(String(err));
    const what = /^[A-Z0-9_]+: ([^,]+)/.exec(e.message)?.[1] ?? "failed";
    const out = new Error(`${e.code}: ${what}, '${this.display(path)}'`) as NodeJS.ErrnoException;
    out.code = e.code;
    return out;
  }

  /**
   * Opens `path` inside a root without following symlinks at open time: the parent dir is
   * opened and re-checked through /proc/self/fd, then the last component is opened relative to
   * it with O_NOFOLLOW | `flags`; a root itself is opened by its real path and re-checked through
   * its descriptor. Needs "write" access (the project only) when `options.access` says so or
   * `flags` hold any of O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND; else "read". Resolves
   * `path` first, so an in-root symlink is opened at its (checked) real target. Non-regular files
   * (FIFOs, devices, dirs) are refused unless `options.allowDirectory` and it is a directory.
   * Errors are re-worded (fsError).
   * @throws PathEscapeError; Error with the fs `code` (ENOENT, EISDIR, ENOTSUP, ELOOP, …)
   */
  async open(
    path: string,
    flags: number,
    options: { allowDirectory?: boolean; access?: FileAccess } = {},
  ): Promise<FileHandle> {
    const allowDirectory = options.allowDirectory ?? false;
    const access: FileAccess = flags & WRITE_FLAGS || options.access === "write" ? "write" : "read";
    const { full } = await this.resolve(path, access);
    try {
      let handle: FileHandle;
      const roots = await this.#roots(access);
      if (roots.includes(full)) {
        if (full === roots[0] && !allowDirectory)
          throw Object.assign(new Error("EISDIR: illegal operation on a directory"), { code: "EISDIR" });
        handle = await open(full, flags | O_NOFOLLOW | O_NONBLOCK);
        await this.#checkHandle(handle, path, access).catch(async (err: unknown) => {
          await handle.close();
          throw err;
        });
      } else {
        handle = await this.#withDir(dirname(full), path, access, (dir) =>
          open(join(dir, basename(full)), flags | O_NOFOLLOW | O_NONBLOCK, 0o666),
        );
      }
      const st = await handle.stat().catch(async (err: unknown) => {
        await handle.close();
        throw err;
      });
      if (!st.isFile() && !(allowDirectory && st.isDirectory())) {
        await handle.close();
        throw Object.assign(new Error(`ENOTSUP: not a regular file`), {
          code: st.isDirectory() ? "EISDIR" : "ENOTSUP",
        });
      }
      return handle;
    } catch (err) {
      throw this.fsError(err, path);
    }
  }

  /**
   * Creates `path` and its missing parents inside the project, one component at a time relative
   * to an open, checked directory (a component swapped for a symlink fails with ELOOP).
   */
  async mkdirs(path: string): Promise<void> {
    const { existing, tail } = await this.resolve(path, "write");
    try {
      if (!HAVE_PROC_FD) {
        if (tail.length > 0) await mkdir(join(existing, ...tail), { recursive: true });
        return;
      }
      let dir = await open(existing, O_RDONLY | O_DIRECTORY);
      try {
        await this.#checkHandle(dir, path, "write");
        for (const name of tail) {
          const next = `/proc/self/fd/${dir.fd}/${name}`;
          await mkdir(next).catch((err: NodeJS.ErrnoException) => {
            if (err.code !== "EEXIST") throw err;
          });
          const child = await open(next, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
          await dir.close();
          dir = child;
        }
      } finally {
        await dir.close().catch(() => {});
      }
    } catch (err) {
      throw this.fsError(err, path);
    }
  }

  /** Lists a directory inside a readable root (entry names; symlinks are not followed). */
  async readdir(path: string): Promise<string[]> {
    const handle = await this.open(path, O_RDONLY | O_DIRECTORY, { allowDirectory: true });
    try {
      return await readdir(this.#handlePath(handle, path));
    } catch (err) {
      throw this.fsError(err, path);
    } finally {
      await handle.close();
    }
  }

  /** stat() of a path inside a readable root (its real target for symlinks). */
  async stat(path: string): Promise<Stats> {
    const { full } = await this.resolve(path, "read");
    try {
      return await lstat(full);
    } catch (err) {
      throw this.fsError(err, path);
    }
  }

  /** `/proc/self/fd/<fd>` for an open handle (the path itself without /proc). */
  #handlePath(handle: FileHandle, path: string): string {
    return HAVE_PROC_FD ? `/proc/self/fd/${handle.fd}` : resolve(this.root, path);
  }

  /** Opens `dir`, checks where it really is, runs `fn` with a path naming the open dir. */
  async #withDir<T>(
    dir: string,
    path: string,
    access: FileAccess,
    fn: (dirPath: string) => Promise<T>,
  ): Promise<T> {
    if (!HAVE_PROC_FD) return fn(dir);
    const handle = await open(dir, O_RDONLY | O_DIRECTORY);
    try {
      await this.#checkHandle(handle, path, access);
      return await fn(`/proc/self/fd/${handle.fd}`);
    } finally {
      await handle.close();
    }
  }

  /**
   * The real location of an open handle must be a root `access` may reach or below one (the
   * caller closes it).
   */
  async #checkHandle(handle: FileHandle, path: string, access: FileAccess): Promise<void> {
    if (!HAVE_PROC_FD) return;
    const where = await readlink(`/proc/self/fd/${handle.fd}`);
    if (!(await this.#roots(access)).some((root) => isInside(where, root)))
      throw this.escape(resolve(this.root, path), true);
  }
}

/** pi's read tool operations, confined to the project and `jail`'s read-only roots. */
export function confinedReadOperations(jail: ProjectConfinement): ReadOperations {
  return {
    readFile: (path) => readWhole(jail, path),
    access: async (path) => {
      const { full } = await jail.resolve(path, "read");
      await access(full, constants.R_OK).catch((err: unknown) => {
        throw jail.fsError(err, path);
      });
    },
    detectImageMimeType: async (path) => {
      const handle = await jail.open(path, O_RDONLY);
      try {
        // Sniffs through the open descriptor, so it reads exactly the checked file.
        return await detectSupportedImageMimeTypeFromFile(
          HAVE_PROC_FD ? `/proc/self/fd/${handle.fd}` : (await jail.resolve(path, "read")).full,
        );
      } finally {
        await handle.close();
      }
    },
  };
}

/**
 * pi's write tool operations, confined to the project (never `jail`'s read-only roots: opens for
 * writing and mkdirs need "write" access). pi calls mkdir(parent) before
 * writeFile(file): a parent outside the project is left alone here (nothing is created), so the
 * refusal comes from writeFile and names the file the model asked for.
 */
export function confinedWriteOperations(jail: ProjectConfinement): WriteOperations {
  return {
    writeFile: (path, content) => writeWhole(jail, path, content),
    mkdir: (dir) =>
      jail.mkdirs(dir).catch((err: unknown) => {
        if (!(err instanceof PathEscapeError)) throw err;
      }),
  };
}

/**
 * pi's edit tool operations, confined to the project: its reads need "write" access too, so the
 * file it reads is one it may write (never in `jail`'s read-only roots).
 */
export function confinedEditOperations(jail: ProjectConfinement): EditOperations {
  return {
    readFile: (path) => readWhole(jail, path, "write"),
    writeFile: (path, content) => writeWhole(jail, path, content),
    access: async (path) => {
      const { full } = await jail.resolve(path, "write");
      await access(full, constants.R_OK | constants.W_OK).catch((err: unknown) => {
        throw jail.fsError(err, path);
      });
    },
  };
}

/** pi's ls tool operations, confined to the readable roots (entries leading outside fail to stat). */
export function confinedLsOperations(jail: ProjectConfinement): LsOperations {
  return {
    exists: (path) => existsInside(jail, path),
    stat: (path) => jail.stat(path),
    readdir: (path) => jail.readdir(path),
  };
}

/**
 * pi's grep tool operations: the search root and context reads confined to the readable roots (rg
 * never follows links).
 */
export function confinedGrepOperations(jail: ProjectConfinement): GrepOperations {
  return {
    isDirectory: async (path) => (await jail.stat(path)).isDirectory(),
    readFile: async (path) => (await readWhole(jail, path)).toString("utf8"),
  };
}

/** pi's find tool operations: a glob walk below a checked (readable) path that never follows symlinks. */
export function confinedFindOperations(jail: ProjectConfinement): FindOperations {
  return {
    exists: (path) => existsInside(jail, path),
    glob: (pattern, cwd, { ignore, limit }) => globInside(jail, pattern, cwd, ignore, limit),
  };
}

/** The jails of one session's file tools: with the read-only roots, and the project alone. */
interface ToolJails {
  reading: ProjectConfinement;
  projectOnly: ProjectConfinement;
}

/** The built-in tools that take paths, and how to build each confined. */
const CONFINED_TOOL_FACTORIES: Record<string, (projectDir: string, jails: ToolJails) => ToolDefinition> = {
  read: (dir, { reading }) =>
    defineTool(createReadToolDefinition(dir, { operations: confinedReadOperations(reading) })),
  write: (dir, { projectOnly }) =>
    defineTool(createWriteToolDefinition(dir, { operations: confinedWriteOperations(projectOnly) })),
  edit: (dir, { projectOnly }) =>
    defineTool(createEditToolDefinition(dir, { operations: confinedEditOperations(projectOnly) })),
  ls: (dir, { reading }) =>
    defineTool(createLsToolDefinition(dir, { operations: confinedLsOperations(reading) })),
  grep: (dir, { reading }) =>
    defineTool(createGrepToolDefinition(dir, { operations: confinedGrepOperations(reading) })),
  find: (dir, { reading }) =>
    defineTool(createFindToolDefinition(dir, { operations: confinedFindOperations(reading) })),
};

/** Options of {@link confinedFileTools}. */
export interface ConfinedFileToolsOptions {
  /**
   * Absolute real paths (dirs or files) that the read-only tools (read, ls, grep, find) may also
   * reach, never write and edit: the session's operator skill roots (resource-policy.ts
   * `operatorSkillRoots`: the PI_SKILL_PATHS entries and the skill dirs, or flat skill files, of
   * operator extension packages). Default none. See ProjectConfinement's constructor.
   */
  readOnlyRoots?: readonly string[];
}

/**
 * Confined replacements (same names, so they replace pi's built-ins in `customTools`) for every
 * path-taking built-in among `toolNames` (read, write, edit, ls, grep, find); other names are
 * skipped. Enabling one of these tools in a session therefore always gets the confined form.
 * read, ls, grep and find reach the project dir and `options.readOnlyRoots`; write and edit the
 * project dir only. Relative paths resolve against `projectDir` (absolute).
 */
export function confinedFileTools(
  projectDir: string,
  toolNames: readonly string[],
  options: ConfinedFileToolsOptions = {},
): ToolDefinition[] {
  const jails: ToolJails = {
    reading: new ProjectConfinement(projectDir, options.readOnlyRoots),
    projectOnly: new ProjectConfinement(projectDir),
  };
  return toolNames.flatMap((name) => {
    const factory = CONFINED_TOOL_FACTORIES[name];
    return factory ? [factory(projectDir, jails)] : [];
  });
}

/** The whole file, read through a confined descriptor (`access`: the roots it may lie in). */
async function readWhole(
  jail: ProjectConfinement,
  path: string,
  access: FileAccess = "read",
): Promise<Buffer> {
  const handle = await jail.open(path, O_RDONLY, { access });
  try {
    return await handle.readFile();
  } catch (err) {
    throw jail.fsError(err, path);
  } finally {
    await handle.close();
  }
}

/** Replaces the file's contents (created if missing) through a confined descriptor. */
async function writeWhole(jail: ProjectConfinement, path: string, content: string): Promise<void> {
  // No O_TRUNC: the descriptor is checked to be a regular file before anything is cut.
  const handle = await jail.open(path, O_WRONLY | O_CREAT);
  try {
    await handle.truncate(0);
    await handle.writeFile(content, "utf8");
  } catch (err) {
    throw jail.fsError(err, path);
  } finally {
    await handle.close();
  }
}

/** False for missing paths, PathEscapeError for paths outside. */
async function existsInside(jail: ProjectConfinement, path: string): Promise<boolean> {
  try {
    await jail.stat(path);
    return true;
  } catch (err) {
    if (err instanceof PathEscapeError) throw err;
    return false;
  }
}

/**
 * Files below `cwd` (inside a readable root) matching `pattern`: against the path relative to
 * `cwd` when the pattern has a `/`, else against the name. Symlinks are listed, never descended.
 */
async function globInside(
  jail: ProjectConfinement,
  pattern: string,
  cwd: string,
  ignore: readonly string[],
  limit: number,
): Promise<string[]> {
  const root = (await jail.resolve(cwd, "read")).full;
  const results: string[] = [];
  const queue = [""];
  while (queue.length > 0 && results.length < limit) {
    const relDir = queue.shift() ?? "";
    const dirents = await readdir(join(root, relDir), { withFileTypes: true }).catch(() => []);
    for (const d of dirents) {
      const rel = relDir ? `${relDir}/${d.name}` : d.name;
      if (ignore.some((g) => matchesGlob(rel, g) || matchesGlob(`${rel}/`, g))) continue;
      if (d.isDirectory()) queue.push(rel);
      if (matchesGlob(pattern.includes("/") ? rel : d.name, pattern)) {
        results.push(join(cwd, rel));
        if (results.length >= limit) break;
      }
    }
  }
  return results;
}

/** Whether a relative path leaves its base. */
function isOutside(rel: string): boolean {
  return rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel);
}

/** Whether `path` is `root` or below it (both absolute and normalized). */
function isInside(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** ENOENT / ENOTDIR: the path (or a parent) does not exist. */
function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}
