// The CLI's config store (apps/cli/src/config-store.ts) in a temp dir: 0700 dir, 0600 file,
// atomic rewrite, broken files, an existing dir too open tightened (another user's refused, even
// sticky; root's kept unless others may write to it and it is not sticky), a config file someone
// else could have written not used, env-paths' XDG location, and env over config over default.
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  CONFIG_FILE,
  clearConfig,
  configDir,
  DEFAULT_URL,
  loadConfig,
  maskKey,
  normalizeUrl,
  resolveConnection,
  saveConfig,
} from "../../apps/cli/src/config-store.ts";
import { CliError } from "../../apps/cli/src/errors.ts";

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "pifleet-config-"));
});

afterEach(async () => {
  vi.unstubAllEnvs();
  await rm(root, { recursive: true, force: true });
});

const mode = async (path: string) => (await stat(path)).mode & 0o777;

describe("saveConfig / loadConfig / clearConfig", () => {
  it("creates the dir 0700 and the file 0600, and reads back what it wrote", async () => {
    const dir = join(root, "nested", "pifleet");
    const file = await saveConfig(dir, { url: "http://127.0.0.1:4001", key: "pfk_secret_123456" });
    expect(file).toBe(join(dir, CONFIG_FILE));
    expect(await mode(dir)).toBe(0o700);
    expect(await mode(file)).toBe(0o600);
    expect(JSON.parse(await readFile(file, "utf8"))).toEqual({
      url: "http://127.0.0.1:4001",
      key: "pfk_secret_123456",
    });
    expect(await loadConfig(dir)).toEqual({ url: "http://127.0.0.1:4001", key: "pfk_secret_123456" });
  });

  it("replaces a world-readable file with a 0600 one and leaves no temp files", async () => {
    const dir = join(root, "pifleet");
    await saveConfig(dir, { url: "http://a:1" });
    await chmod(join(dir, CONFIG_FILE), 0o644);
    await saveConfig(dir, { url: "http://b:2" });
    expect(await mode(join(dir, CONFIG_FILE))).toBe(0o600);
    expect(await loadConfig(dir)).toEqual({ url: "http://b:2" });
    expect(await readdir(dir)).toEqual([CONFIG_FILE]);
  });

  it("reads nothing from a missing file and refuses a broken one", async () => {
    expect(await loadConfig(join(root, "none"))).toEqual({});
    await writeFile(join(root, CONFIG_FILE), "{not json");
    await expect(loadConfig(root)).rejects.toBeInstanceOf(CliError);
    await writeFile(join(root, CONFIG_FILE), JSON.stringify({ url: 5, key: "" }));
    expect(await loadConfig(root)).toEqual({});
  });

  it("uses only a config file no one else could have written, and tightens a readable one", async () => {
    const file = await saveConfig(root, { url: "http://a:1", key: "pfk_secret_123456" });
    await chmod(file, 0o644);
    expect(await loadConfig(root)).toEqual({ url: "http://a:1", key: "pfk_secret_123456" });
    expect(await mode(file)).toBe(0o600);
    // Writable by others: someone may have pointed it at their gateway (it was read as is).
    await chmod(file, 0o666);
    await expect(loadConfig(root)).rejects.toThrow(/may be written by others \(0666\): not used/);
    await chmod(file, 0o600);
    // Another user's file (planted before the first login in a shared dir): not used.
    if (process.getuid!() === 0) await chown(file, 4242, 4242);
    else vi.spyOn(process, "getuid").mockReturnValue(process.getuid!() + 4242);
    try {
      await expect(loadConfig(root)).rejects.toThrow(/belongs to another user \(uid \d+\): not used/);
    } finally {
      vi.restoreAllMocks();
    }
  });

  it("clears the stored config", async () => {
    await saveConfig(root, { url: "http://a:1" });
    expect(await clearConfig(root)).toBe(true);
    expect(await clearConfig(root)).toBe(false);
    expect(await loadConfig(root)).toEqual({});
  });
});

describe.skipIf(process.platform === "win32")("the config dir's permissions", () => {
  it("tightens an existing dir that group or others may read to 0700, and says so", async () => {
    const dir = join(root, "pifleet");
    await mkdir(dir);
    await chmod(dir, 0o755);
    const notes: string[] = [];
    const file = await saveConfig(dir, { url: "http://a:1", key: "pfk_secret_123456" }, (n) => notes.push(n));
    // It used to stay 0755: only a dir the CLI created was 0700.
    expect(await mode(dir)).toBe(0o700);
    expect(await mode(file)).toBe(0o600);
    expect(notes).toEqual([`tightened the permissions of ${dir} from 0755 to 0700: it holds the API key`]);
    // Private already: nothing to say.
    await saveConfig(dir, { url: "http://b:2" }, (n) => notes.push(n));
    expect(notes).toHaveLength(1);
  });

  it("leaves a sticky shared dir (like /tmp) as it is", async () => {
    const dir = join(root, "shared");
    await mkdir(dir);
    await chmod(dir, 0o1777);
    const file = await saveConfig(dir, { url: "http://a:1", key: "pfk_secret_123456" });
    expect((await stat(dir)).mode & 0o7777).toBe(0o1777);
    expect(await mode(file)).toBe(0o600);
  });

  /**
   * Makes `dir` someone else's (uid 4242, not root): chowned when the test runs as root, else the
   * CLI is made to believe it runs as another user.
   */
  async function asAnotherUsers(dir: string): Promise<void> {
    if (process.getuid!() === 0) await chown(dir, 4242, 4242);
    else vi.spyOn(process, "getuid").mockReturnValue(process.getuid!() + 4242);
  }

  it("refuses another user's dir whatever its mode, sticky included: its owner could swap the config", async () => {
    for (const [name, dirMode] of [
      ["sticky", 0o1777],
      ["open", 0o777],
      ["readable", 0o755],
      ["private", 0o700],
    ] as const) {
      const dir = join(root, name);
      await mkdir(dir);
      await chmod(dir, dirMode);
      await asAnotherUsers(dir);
      try {
        // The sticky one used to be taken as shared like /tmp, and the key written into it.
        await expect(saveConfig(dir, { url: "http://a:1", key: "pfk_secret_123456" })).rejects.toThrow(
          new RegExp(`belongs to another user \\(uid \\d+, 0${dirMode.toString(8)}\\)`),
        );
        expect(await readdir(dir)).toEqual([]);
        expect((await stat(dir)).mode & 0o7777).toBe(dirMode);
      } finally {
        vi.restoreAllMocks();
      }
    }
  });

  it.skipIf(process.getuid?.() !== 0)(
    "keeps a dir of root's that others may not write to or that is sticky, and refuses one they may write to",
    async () => {
      const dir = join(root, "roots");
      await mkdir(dir);
      vi.spyOn(process, "getuid").mockReturnValue(4242); // the CLI runs as a user, the dir is root's
      try {
        await chmod(dir, 0o777);
        await expect(saveConfig(dir, { url: "http://a:1" })).rejects.toThrow(
          /belongs to root and others may write to it \(0777\)/,
        );
        expect(await readdir(dir)).toEqual([]);
        for (const dirMode of [0o1777, 0o755]) {
          await chmod(dir, dirMode);
          const file = await saveConfig(dir, { url: "http://a:1", key: "pfk_secret_123456" });
          expect((await stat(dir)).mode & 0o7777).toBe(dirMode);
          expect(await mode(file)).toBe(0o600);
        }
      } finally {
        vi.restoreAllMocks();
      }
    },
  );
});

describe("configDir", () => {
  it("honours PIFLEET_CONFIG_DIR, else env-paths' config dir under XDG_CONFIG_HOME", () => {
    expect(configDir({ PIFLEET_CONFIG_DIR: "/x/y" })).toBe("/x/y");
    if (process.platform === "linux") {
      vi.stubEnv("XDG_CONFIG_HOME", root);
      expect(configDir({})).toBe(join(root, "pifleet"));
    }
  });
});

describe("resolveConnection", () => {
  it("takes the environment over the stored config over the default", () => {
    expect(resolveConnection({}, {})).toEqual({
      url: DEFAULT_URL,
      key: undefined,
      urlSource: "default",
      keySource: "none",
    });
    const stored = { url: "http://stored:1", key: "stored-key" };
    expect(resolveConnection(stored, {})).toMatchObject({
      url: "http://stored:1",
      key: "stored-key",
      keySource: "config",
    });
    expect(resolveConnection(stored, { PIFLEET_URL: "http://env:2", PIFLEET_KEY: "env-key" })).toEqual({
      url: "http://env:2",
      key: "env-key",
      urlSource: "env",
      keySource: "env",
    });
    // An empty PIFLEET_KEY forces open mode; an empty PIFLEET_URL is ignored.
    expect(resolveConnection(stored, { PIFLEET_URL: "", PIFLEET_KEY: "" })).toMatchObject({
      url: "http://stored:1",
      key: undefined,
      keySource: "none",
    });
  });

  it("normalizes URLs and never shows a key", () => {
    expect(normalizeUrl(" http://127.0.0.1:4001/ ")).toBe("http://127.0.0.1:4001");
    expect(normalizeUrl("https://fleet.example.com/base/")).toBe("https://fleet.example.com/base");
    for (const bad of ["ftp://x", "not a url", "http://u:p@host", "http://h/?q=1"]) {
      expect(() => normalizeUrl(bad)).toThrow(CliError);
      try {
        normalizeUrl(bad);
      } catch (err) {
        expect((err as CliError).exitCode).toBe(2);
      }
    }
    expect(maskKey("pfk_abcdefghijklmnop")).toBe("key …mnop");
    expect(maskKey("short")).toBe("key ****");
    expect(maskKey(undefined)).toContain("open mode");
  });
});
