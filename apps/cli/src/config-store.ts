/**
 * Where `pifleet login` keeps the gateway URL and API key, and how the effective connection is
 * chosen: environment (`PIFLEET_URL`, `PIFLEET_KEY`) over the stored config over the default.
 *
 * The config is `config.json` in the user's config dir (env-paths: `$XDG_CONFIG_HOME/pifleet`
 * or `~/.config/pifleet` on Linux, `~/Library/Preferences/pifleet` on macOS,
 * `%APPDATA%\pifleet\Config` on Windows; `PIFLEET_CONFIG_DIR` overrides it). The file holds a
 * secret: it is written atomically (temp file + rename) with mode 0600, in a dir of the user's
 * (or root's) that is private (0700): created so, or tightened to it when it already exists with
 * group or other permissions (see {@link privateDir}).
 */
import { chmod, mkdir, open, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import envPaths from "env-paths";
import { CliError, usageError } from "./errors.ts";

/** The gateway `npm start` serves by default. */
export const DEFAULT_URL = "http://127.0.0.1:4001";

/** The file name inside the config dir. */
export const CONFIG_FILE = "config.json";

/** What `pifleet login` stores. */
export interface StoredConfig {
  /** Gateway origin, e.g. `https://fleet.example.com`. */
  url?: string;
  /** Org API key (absent: open mode, no `Authorization` header). */
  key?: string;
}

/** The connection a command uses, and where each part came from. */
export interface Connection {
  url: string;
  key: string | undefined;
  urlSource: "env" | "config" | "default";
  keySource: "env" | "config" | "none";
}

/** Environment variables the store reads. */
export type Env = Record<string, string | undefined>;

/** The config dir: `PIFLEET_CONFIG_DIR`, else env-paths' config dir for `pifleet`. */
export function configDir(env: Env = process.env): string {
  const override = env.PIFLEET_CONFIG_DIR;
  if (override) return override;
  return envPaths("pifleet", { suffix: "" }).config;
}

/** The config file path inside `dir`. */
export function configPath(dir: string): string {
  return join(dir, CONFIG_FILE);
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === code;
}

/**
 * Reads the stored config in `dir`; `{}` when there is none. Like ssh with its config, a file
 * someone else could have written is not used (POSIX): one owned by another user (not root), or
 * one group or others may write to. One of the user's own that group or others may read is
 * tightened to 0600 (it holds the API key).
 * @throws CliError when the file is not a JSON object with string fields, or is not trusted
 */
export async function loadConfig(dir: string): Promise<StoredConfig> {
  const file = configPath(dir);
  let text: string;
  try {
    const handle = await open(file, "r");
    try {
      await trustedFile(file, await handle.stat(), () => handle.chmod(0o600));
      text = await handle.readFile("utf8");
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (err instanceof CliError) throw err;
    if (isErrno(err, "ENOENT")) return {};
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new CliError(`${file} is not a valid pifleet config`, undefined, {
      hint: "run `pifleet login` again or delete the file",
    });
  }
  const { url, key } = parsed as { url?: unknown; key?: unknown };
  const config: StoredConfig = {};
  if (typeof url === "string" && url !== "") config.url = url;
  if (typeof key === "string" && key !== "") config.key = key;
  return config;
}

/** `mode`'s permission bits as ls-style octal: `0755`, `01777` (sticky). */
const octal = (mode: number): string => `0${(mode & 0o7777).toString(8)}`;

/** See loadConfig: refuses a config file someone else could have written; tightens a readable one. */
async function trustedFile(
  file: string,
  { uid, mode }: { uid: number; mode: number },
  tighten: () => Promise<void>,
): Promise<void> {
  if (process.platform === "win32") return;
  const hint = "delete it and run `pifleet login` again";
  if (uid !== process.getuid?.() && uid !== 0) {
    throw new CliError(`${file} belongs to another user (uid ${uid}): not used`, undefined, { hint });
  }
  if ((mode & 0o022) !== 0) {
    throw new CliError(`${file} may be written by others (${octal(mode)}): not used`, undefined, { hint });
  }
  if ((mode & 0o044) !== 0 && uid === process.getuid?.()) await tighten();
}

/**
 * Makes `dir` fit for a secret before one is written into it (POSIX; nothing on Windows, where
 * mode bits mean nothing): created 0700 when missing (parents too). Whoever owns the dir can
 * rename or delete any file in it, the config included, so the owner is checked first: it must be
 * the user or root. An existing dir of the user's own that group or others may read, enter or
 * write is tightened to 0700 — what ssh and gpg insist on for theirs; `onNote` says so. A sticky
 * dir (shared by design, like /tmp: others can neither rename nor delete the user's files in it)
 * is left as it is. A root-owned dir is kept when others may not write to it, or when it is
 * sticky. Returns the mode it had when it was tightened, else undefined.
 * @throws CliError when the dir belongs to another user (not root): its owner could replace the
 * config (point the CLI at their gateway and capture the key), whatever its mode; or when it is
 * root's, not sticky, and group or others may write to it
 */
export async function privateDir(
  dir: string,
  onNote?: (message: string) => void,
): Promise<number | undefined> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (process.platform === "win32") return undefined;
  const { mode, uid } = await stat(dir);
  const sticky = (mode & 0o1000) !== 0;
  if (uid !== process.getuid?.()) {
    if (uid !== 0) {
      throw new CliError(`${dir} belongs to another user (uid ${uid}, ${octal(mode)})`, undefined, {
        hint: "its owner could replace the config: use a dir of your own, PIFLEET_CONFIG_DIR=…",
      });
    }
    // root's: others may look, not write (the file is 0600), or sticky (they cannot touch it).
    if ((mode & 0o022) === 0 || sticky) return undefined;
    throw new CliError(`${dir} belongs to root and others may write to it (${octal(mode)})`, undefined, {
      hint: "use a dir of your own: PIFLEET_CONFIG_DIR=…",
    });
  }
  if ((mode & 0o077) === 0 || sticky) return undefined;
  await chmod(dir, 0o700);
  onNote?.(`tightened the permissions of ${dir} from ${octal(mode)} to 0700: it holds the API key`);
  return mode & 0o777;
}

/**
 * Writes `config` to `dir` as `config.json`, mode 0600, atomically, after making `dir` private
 * ({@link privateDir}: created 0700, or tightened to 0700; `onNote` tells when it was).
 * Returns the file path. @throws CliError as privateDir does
 */
export async function saveConfig(
  dir: string,
  config: StoredConfig,
  onNote?: (message: string) => void,
): Promise<string> {
  await privateDir(dir, onNote);
  const file = configPath(dir);
  const temp = `${file}.${process.pid}.${Date.now()}.tmp`;
  const body: StoredConfig = {};
  if (config.url !== undefined) body.url = config.url;
  if (config.key !== undefined) body.key = config.key;
  const handle = await open(temp, "wx", 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(body, null, 2)}\n`, "utf8");
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await chmod(temp, 0o600); // whatever the umask did
    await rename(temp, file);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  return file;
}

/** Deletes the stored config in `dir`; resolves whether there was one. */
export async function clearConfig(dir: string): Promise<boolean> {
  try {
    await rm(configPath(dir));
    return true;
  } catch (err) {
    if (isErrno(err, "ENOENT")) return false;
    throw err;
  }
}

/**
 * The effective connection: `PIFLEET_URL` / `PIFLEET_KEY` override the stored values (an empty
 * `PIFLEET_KEY` forces "no key"), then the stored config, then {@link DEFAULT_URL} and no key.
 */
export function resolveConnection(stored: StoredConfig, env: Env): Connection {
  const envUrl = env.PIFLEET_URL;
  const envKey = env.PIFLEET_KEY;
  const url = envUrl ? envUrl : (stored.url ?? DEFAULT_URL);
  const urlSource = envUrl ? "env" : stored.url !== undefined ? "config" : "default";
  if (envKey !== undefined) {
    return {
      url,
      urlSource,
      key: envKey === "" ? undefined : envKey,
      keySource: envKey === "" ? "none" : "env",
    };
  }
  return { url, urlSource, key: stored.key, keySource: stored.key === undefined ? "none" : "config" };
}

/**
 * Checks a gateway URL typed by the user: http(s), no credentials, query or fragment. Returns it
 * without trailing slashes; throws a usage {@link CliError} otherwise.
 */
export function normalizeUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw usageError(`not a URL: ${raw}`, "e.g. http://127.0.0.1:4001");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw usageError(`the gateway URL must be http(s): ${raw}`);
  }
  if (url.username || url.password || url.search || url.hash) {
    throw usageError(`the gateway URL may not carry credentials, a query or a fragment: ${raw}`);
  }
  return url.toString().replace(/\/+$/, "");
}

/** A key shown to the user: never the key itself. */
export function maskKey(key: string | undefined): string {
  if (key === undefined) return "no key (open mode)";
  return key.length > 12 ? `key …${key.slice(-4)}` : "key ****";
}
