// Operator skills (PI_SKILL_PATHS, and the skills an operator extension package carries) live
// outside the project, and pi's system prompt tells the model to load a skill by `read`ing the
// absolute path it lists. The read-only file tools (read, ls, grep, find) therefore also reach the
// session's operator skill roots: the skill paths, and only the skill dirs (or flat skill files)
// of a package (never the rest of it: its code, config, skills its manifest excludes), told apart
// from project skills by the path pi found them at (a project skill swapped for a symlink into a
// package opens nothing). write and edit never do, and a symlink in an operator root,
// or a sibling dir that merely shares a root's name as a prefix, leads nowhere.
import { mkdir, readFile, realpath, rename, stat, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fauxAssistantMessage, fauxToolCall, type TranscriptContext } from "@earendil-works/pi-ai";
import { SettingsManager } from "@earendil-works/pi-coding-agent";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  confinedFileTools,
  confinedFindOperations,
  confinedGrepOperations,
  confinedLsOperations,
  confinedWriteOperations,
  PathEscapeError,
  ProjectConfinement,
} from "../src/confined-file-operations.ts";
import { openSession, type ResourcePolicy } from "../src/index.ts";
import { createPolicyResourceLoader } from "../src/resource-policy.ts";
import { fauxRuntime, onCleanup, recordingSink, sessionDirs, tempDir } from "./helpers.ts";

/**
 * The tenant's concurrent bash, made deterministic: `afterConfine` (when set) runs right after
 * the project resources' confined re-read (confined-resources.ts), i.e. between that check and the
 * policy's look at which skills came from a package. Unset, the module is pi-runtime's own.
 */
const race = vi.hoisted(() => ({ afterConfine: undefined as undefined | (() => Promise<void>) }));
vi.mock("../src/confined-resources.ts", async (importOriginal) => {
  const real = await importOriginal<typeof import("../src/confined-resources.ts")>();
  return {
    ...real,
    confineProjectResources: async (...args: Parameters<typeof real.confineProjectResources>) => {
      await real.confineProjectResources(...args);
      await race.afterConfine?.();
    },
  };
});
afterEach(() => {
  race.afterConfine = undefined;
});

async function put(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
}

const SKILL_TEXT = "---\nname: review\ndescription: Reviews code\n---\n\nFollow checklist.md.\n";

/**
 * A project, an operator skill root `<base>/skills` with skill `review` (plus links out of it),
 * a sibling `<base>/skills-evil` sharing the root's name as a prefix, and `<base>/outside`.
 */
async function fixture() {
  const dirs = await sessionDirs();
  const base = await tempDir("pf-opskills-");
  const skills = join(base, "skills");
  const review = join(skills, "review");
  await put(join(review, "SKILL.md"), SKILL_TEXT);
  await put(join(review, "checklist.md"), "CHECKLIST-MARKER\n");
  await put(join(base, "outside", "secret.txt"), "OUTSIDE-SECRET\n");
  await put(join(base, "skills-evil", "secret.md"), "PREFIX-SECRET\n");
  await symlink(join(base, "outside", "secret.txt"), join(review, "leak.md"));
  await symlink(join(base, "outside"), join(review, "leakdir"));
  await put(join(dirs.projectDir, "notes.txt"), "PROJECT-NOTES\n");
  return { dirs, base, skills, review };
}

type Call = { id: string; tool: string; args: Parameters<typeof fauxToolCall>[1] };
type ToolResult = { role: string; toolCallId: string; isError: boolean; content: { text?: string }[] };

/**
 * One turn of a session with `policy` in which the (faux) model makes the calls `plan` returns
 * for the system prompt it was given; results by call id.
 */
async function runTools(
  dirs: Awaited<ReturnType<typeof sessionDirs>>,
  policy: ResourcePolicy,
  plan: (systemPrompt: string) => Call[],
): Promise<Map<string, { isError: boolean; text: string }>> {
  const { runtime, faux } = await fauxRuntime();
  faux.setResponses([
    (context: TranscriptContext) =>
      fauxAssistantMessage(
        plan(JSON.stringify(context.messages)).map((c) => fauxToolCall(c.tool, c.args, { id: c.id })),
        { stopReason: "toolUse" },
      ),
    fauxAssistantMessage("done"),
  ]);
  const session = await openSession({ runtime, ...dirs, ...policy });
  onCleanup(() => session.dispose());
  expect((await session.run("go", {}, recordingSink().sink)).status).toBe("finished");
  const results = new Map<string, { isError: boolean; text: string }>();
  for (const m of session.messages() as ToolResult[]) {
    if (m.role === "toolResult")
      results.set(m.toolCallId, { isError: m.isError, text: m.content.map((c) => c.text ?? "").join("") });
  }
  return results;
}

describe("operator skill files (real sessions)", () => {
  it("the model reads an operator skill at the absolute path pi's system prompt lists", async () => {
    const { dirs, skills, review } = await fixture();
    let location = "";
    const results = await runTools(dirs, { skillPaths: [skills] }, (systemPrompt) => {
      // pi: "Use the read tool to load a skill's file …" + <location>/abs/SKILL.md</location>
      expect(systemPrompt).toContain("Use the read tool to load a skill's file");
      location = /<location>([^<]*review[^<]*)<\/location>/.exec(systemPrompt)?.[1] ?? "";
      return [
        { id: "skill", tool: "read", args: { path: location } },
        { id: "ref", tool: "read", args: { path: join(dirname(location), "checklist.md") } },
        { id: "rel", tool: "read", args: { path: "notes.txt" } },
      ];
    });
    expect(location).toBe(join(review, "SKILL.md"));
    expect(results.get("skill")).toEqual({ isError: false, text: SKILL_TEXT });
    expect(results.get("ref")).toEqual({ isError: false, text: "CHECKLIST-MARKER\n" });
    // Relative paths still resolve against the project dir.
    expect(results.get("rel")).toEqual({ isError: false, text: "PROJECT-NOTES\n" });
  });

  it("refuses write and edit into an operator skill root (files unchanged, nothing created)", async () => {
    const { dirs, skills, review } = await fixture();
    const before = await stat(join(review, "SKILL.md"));
    const results = await runTools(dirs, { skillPaths: [skills] }, (): Call[] => [
      { id: "w-new", tool: "write", args: { path: join(review, "new.md"), content: "pwned" } },
      { id: "w-dir", tool: "write", args: { path: join(review, "sub", "new.md"), content: "pwned" } },
      { id: "w-over", tool: "write", args: { path: join(review, "SKILL.md"), content: "pwned" } },
      {
        id: "e-skill",
        tool: "edit",
        args: { path: join(review, "SKILL.md"), edits: [{ oldText: "Follow", newText: "Ignore" }] },
      },
    ]);
    expect(results.size).toBe(4);
    for (const [id, r] of results) {
      expect(r.isError, id).toBe(true);
      expect(r.text, id).toContain("Path escapes the project directory: ");
    }
    expect(await readFile(join(review, "SKILL.md"), "utf8")).toBe(SKILL_TEXT);
    expect((await stat(join(review, "SKILL.md"))).mtimeMs).toBe(before.mtimeMs);
    await expect(stat(join(review, "new.md"))).rejects.toThrow(/ENOENT/);
    await expect(stat(join(review, "sub"))).rejects.toThrow(/ENOENT/);
  });

  it("refuses reads through symlinks out of an operator root and in a dir sharing its prefix", async () => {
    const { dirs, base, skills, review } = await fixture();
    const results = await runTools(dirs, { skillPaths: [skills] }, (): Call[] => [
      { id: "link", tool: "read", args: { path: join(review, "leak.md") } },
      { id: "linkdir", tool: "read", args: { path: join(review, "leakdir", "secret.txt") } },
      { id: "prefix", tool: "read", args: { path: join(base, "skills-evil", "secret.md") } },
      { id: "dotdot", tool: "read", args: { path: join(skills, "..", "outside", "secret.txt") } },
    ]);
    expect(results.size).toBe(4);
    for (const [id, r] of results) {
      expect(r.isError, id).toBe(true);
      expect(r.text, id).toContain("Path escapes the project directory: ");
      expect(r.text, id).not.toMatch(/OUTSIDE-SECRET|PREFIX-SECRET/);
    }
    expect(results.get("link")?.text).toContain("(a symlink leads outside it)");
  });

  it("reads no operator skill root when skills are switched off", async () => {
    const { dirs, skills, review } = await fixture();
    const { runtime, faux } = await fauxRuntime();
    faux.setResponses([
      fauxAssistantMessage(fauxToolCall("read", { path: join(review, "SKILL.md") }, { id: "r" }), {
        stopReason: "toolUse",
      }),
      fauxAssistantMessage("done"),
    ]);
    const session = await openSession({ runtime, ...dirs, skillPaths: [skills], noSkills: true });
    onCleanup(() => session.dispose());
    expect((await session.run("go", {}, recordingSink().sink)).status).toBe("finished");
    const result = (session.messages() as ToolResult[]).find((m) => m.role === "toolResult");
    expect(result?.isError).toBe(true);
    expect(JSON.stringify(result)).toContain("Path escapes the project directory");
  });
});

describe("ProjectConfinement with read-only roots", () => {
  async function jailFixture() {
    const f = await fixture();
    const realSkills = await realpath(f.skills);
    return { ...f, realSkills, jail: new ProjectConfinement(f.dirs.projectDir, [realSkills]) };
  }

  it("ls, grep and find work inside an operator root, never through its symlinks", async () => {
    const { base, realSkills, jail } = await jailFixture();
    const review = join(realSkills, "review");
    const ls = confinedLsOperations(jail);
    expect((await ls.readdir(realSkills)).sort()).toEqual(["review"]);
    expect((await ls.readdir(review)).sort()).toEqual(["SKILL.md", "checklist.md", "leak.md", "leakdir"]);
    expect((await ls.stat(review)).isDirectory()).toBe(true);
    expect(await ls.exists(join(review, "missing.md"))).toBe(false);
    await expect(Promise.resolve(ls.readdir(join(review, "leakdir")))).rejects.toBeInstanceOf(
      PathEscapeError,
    );
    await expect(Promise.resolve(ls.stat(join(review, "leak.md")))).rejects.toBeInstanceOf(PathEscapeError);
    await expect(Promise.resolve(ls.readdir(join(base, "skills-evil")))).rejects.toBeInstanceOf(
      PathEscapeError,
    );

    const grep = confinedGrepOperations(jail);
    expect(await grep.isDirectory(realSkills)).toBe(true);
    expect(await grep.readFile(join(review, "checklist.md"))).toBe("CHECKLIST-MARKER\n");
    await expect(Promise.resolve(grep.readFile(join(review, "leak.md")))).rejects.toBeInstanceOf(
      PathEscapeError,
    );
    await expect(Promise.resolve(grep.isDirectory(join(base, "skills-evil")))).rejects.toBeInstanceOf(
      PathEscapeError,
    );

    const find = confinedFindOperations(jail);
    const found = await find.glob("*.md", realSkills, { ignore: [], limit: 100 });
    expect(found.map((p) => p.slice(realSkills.length + 1)).sort()).toEqual([
      "review/SKILL.md",
      "review/checklist.md",
      "review/leak.md",
    ]);
    await expect(Promise.resolve(find.exists(join(base, "skills-evil")))).rejects.toBeInstanceOf(
      PathEscapeError,
    );
  });

  it("the ls and find tools list an operator root; write operations refuse it even on the same jail", async () => {
    const { dirs, realSkills, jail } = await jailFixture();
    const tools = confinedFileTools(dirs.projectDir, ["ls", "find"], { readOnlyRoots: [realSkills] });
    const run = async (name: string, params: Record<string, unknown>) => {
      const tool = tools.find((t) => t.name === name);
      const result = await tool?.execute("t", params, undefined, undefined, undefined as never);
      return (result?.content ?? []).map((c) => (c.type === "text" ? c.text : "")).join("");
    };
    expect(await run("ls", { path: join(realSkills, "review") })).toContain("SKILL.md");
    expect(await run("find", { pattern: "SKILL.md", path: realSkills })).toContain("review/SKILL.md");

    const write = confinedWriteOperations(jail);
    await expect(
      Promise.resolve(write.writeFile(join(realSkills, "review", "SKILL.md"), "pwned")),
    ).rejects.toBeInstanceOf(PathEscapeError);
    await expect(jail.mkdirs(join(realSkills, "new"))).rejects.toBeInstanceOf(PathEscapeError);
    expect(await readFile(join(realSkills, "review", "SKILL.md"), "utf8")).toBe(SKILL_TEXT);
    await expect(stat(join(realSkills, "new"))).rejects.toThrow(/ENOENT/);
  });

  it("a single-file operator root is readable itself, its siblings are not", async () => {
    const dirs = await sessionDirs();
    const base = await realpath(await tempDir("pf-opskills-"));
    await put(join(base, "one.md"), "ONE\n");
    await put(join(base, "sibling.md"), "SIBLING\n");
    const read = confinedGrepOperations(new ProjectConfinement(dirs.projectDir, [join(base, "one.md")]));
    expect(await read.readFile(join(base, "one.md"))).toBe("ONE\n");
    await expect(Promise.resolve(read.readFile(join(base, "sibling.md")))).rejects.toBeInstanceOf(
      PathEscapeError,
    );
  });

  it("a single-file root: ls, find and grep reach that file alone, never a name it prefixes nor a path below it", async () => {
    const dirs = await sessionDirs();
    const base = await realpath(await tempDir("pf-opskills-"));
    const quick = join(base, "skills", "quick.md");
    await put(quick, "QUICK\n");
    await put(`${quick}.bak`, "PREFIX-SECRET\n");
    await put(join(base, "skills", "internal", "secret.txt"), "INTERNAL-SECRET\n");
    await symlink(join(base, "skills", "internal", "secret.txt"), join(base, "skills", "link.md"));
    const jail = new ProjectConfinement(dirs.projectDir, [quick]);
    const ls = confinedLsOperations(jail);
    const grep = confinedGrepOperations(jail);
    const find = confinedFindOperations(jail);
    expect((await ls.stat(quick)).isDirectory()).toBe(false);
    expect(await ls.exists(quick)).toBe(true);
    expect(await grep.isDirectory(quick)).toBe(false);
    expect(await grep.readFile(quick)).toBe("QUICK\n");
    expect(await find.glob("*", quick, { ignore: [], limit: 100 })).toEqual([]);
    await expect(Promise.resolve(ls.readdir(quick))).rejects.toThrow(/ENOTDIR/);
    for (const path of [
      `${quick}.bak`,
      join(base, "skills", "internal", "secret.txt"),
      join(quick, "..", "internal", "secret.txt"),
      join(base, "skills", "link.md"),
    ]) {
      await expect(Promise.resolve(grep.readFile(path)), path).rejects.toBeInstanceOf(PathEscapeError);
    }
    for (const dir of [join(base, "skills"), join(base, "skills", "internal")]) {
      await expect(Promise.resolve(ls.readdir(dir)), dir).rejects.toBeInstanceOf(PathEscapeError);
      await expect(Promise.resolve(find.exists(dir)), dir).rejects.toBeInstanceOf(PathEscapeError);
      await expect(Promise.resolve(grep.isDirectory(dir)), dir).rejects.toBeInstanceOf(PathEscapeError);
    }
    // A path below the file lies "inside" it only by name: opening it fails, reading nothing.
    await expect(Promise.resolve(grep.readFile(join(quick, "x")))).rejects.toThrow(/ENOTDIR/);
    // Never writable.
    await expect(
      Promise.resolve(confinedWriteOperations(jail).writeFile(quick, "pwned")),
    ).rejects.toBeInstanceOf(PathEscapeError);
    expect(await readFile(quick, "utf8")).toBe("QUICK\n");
  });

  it("ignores a read-only root that contains the project dir (other projects stay unreadable)", async () => {
    const dirs = await sessionDirs();
    await put(join(dirs.root, "org", "other", "secret.txt"), "OTHER\n");
    const jail = new ProjectConfinement(dirs.projectDir, [await realpath(dirs.root)]);
    await expect(
      Promise.resolve(confinedGrepOperations(jail).readFile(join(dirs.root, "org", "other", "secret.txt"))),
    ).rejects.toBeInstanceOf(PathEscapeError);
  });
});

const PKG_SKILL_TEXT =
  "---\nname: pkg-review\ndescription: Reviews code the package's way\n---\n\nFollow checklist.md.\n";
/** A minimal extension factory; the marker shows if its source ever reaches the model. */
const EXTENSION_CODE = `// EXT-CODE-MARKER
export default function (pi) {
  pi.registerCommand("pkg-hello", { description: "Package command", handler: async () => {} });
}
`;

/**
 * An operator extension package `<base>/pkg` as pi loads it from PI_EXTENSION_PATHS: a `pi`
 * manifest naming its extension (`index.ts`) and its skills (`skills/`, without `skills/internal`,
 * which the manifest excludes), a config file at its root, the skill `pkg-review` in
 * `skills/review` (with a file next to it, and symlinks out of its dir: to the package's config,
 * to the package root and out of the package), a non-skill `skills/README.md`, and
 * `<base>/outside`.
 */
async function packageFixture() {
  const dirs = await sessionDirs();
  const base = await tempDir("pf-oppkg-");
  const pkg = join(base, "pkg");
  const manifest = {
    name: "ops-pkg",
    private: true,
    pi: { extensions: ["./index.ts"], skills: ["./skills", "!skills/internal"] },
  };
  await put(join(pkg, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  await put(join(pkg, "index.ts"), EXTENSION_CODE);
  await put(join(pkg, "config.json"), '{"token": "PKG-CONFIG-SECRET"}\n');
  await put(join(pkg, "skills", "README.md"), "PKG-README-MARKER\n");
  await put(
    join(pkg, "skills", "internal", "SKILL.md"),
    "---\nname: pkg-internal\ndescription: Not for tenants\n---\n\nPKG-INTERNAL-MARKER\n",
  );
  const review = join(pkg, "skills", "review");
  await put(join(review, "SKILL.md"), PKG_SKILL_TEXT);
  await put(join(review, "checklist.md"), "PKG-CHECKLIST-MARKER\n");
  await put(join(base, "outside", "secret.txt"), "OUTSIDE-SECRET\n");
  await symlink(join(pkg, "config.json"), join(review, "config.md"));
  await symlink(pkg, join(review, "pkgroot"));
  await symlink(join(base, "outside", "secret.txt"), join(review, "leak.md"));
  await put(join(dirs.projectDir, "notes.txt"), "PROJECT-NOTES\n");
  return { dirs, base, pkg, review };
}

const QUICK_SKILL_TEXT = "---\nname: quick\ndescription: A flat skill\n---\n\nQuick steps.\n";

/**
 * Adds to `pkg` (of {@link packageFixture}) a flat skill `skills/quick.md` (pi loads a top-level
 * .md of a skills dir as a skill; its dir is `skills/`), a file `skills/quick.md.bak` whose name
 * it prefixes, and a file in the manifest-excluded `skills/internal`. Returns quick.md's path.
 */
async function addFlatSkill(pkg: string): Promise<string> {
  const quick = join(pkg, "skills", "quick.md");
  await put(quick, QUICK_SKILL_TEXT);
  await put(`${quick}.bak`, "PKG-INTERNAL-MARKER bak\n");
  await put(join(pkg, "skills", "internal", "secret.txt"), "PKG-INTERNAL-MARKER secret\n");
  return quick;
}

/** Markers of package files the model must never see. */
const PKG_SECRETS =
  /EXT-CODE-MARKER|PKG-CONFIG-SECRET|PKG-README-MARKER|PKG-INTERNAL-MARKER|OUTSIDE-SECRET|ops-pkg/;

function expectAllRefused(results: Map<string, { isError: boolean; text: string }>, count: number): void {
  expect(results.size).toBe(count);
  for (const [id, r] of results) {
    expect(r.isError, id).toBe(true);
    expect(r.text, id).toContain("Path escapes the project directory: ");
    expect(r.text, id).not.toMatch(PKG_SECRETS);
  }
}

describe("skills of operator extension packages (real sessions)", () => {
  it("the model reads a package skill at the path pi lists and the files next to it; the extension loads", async () => {
    const { dirs, pkg, review } = await packageFixture();
    const { runtime } = await fauxRuntime();
    const probe = await openSession({ runtime, ...dirs, extensionPaths: [pkg] });
    onCleanup(() => probe.dispose());
    const listed = await probe.command({ type: "get_commands" });
    const names = (listed as { data: { commands: { name: string; source: string }[] } }).data.commands.map(
      (c) => `${c.source}:${c.name}`,
    );
    // pi really loaded the package: its extension's command and its skill (not the excluded one).
    expect(names).toContain("extension:pkg-hello");
    expect(names).toContain("skill:skill:pkg-review");
    expect(names.join(" ")).not.toContain("pkg-internal");

    let location = "";
    const results = await runTools(dirs, { extensionPaths: [pkg] }, (systemPrompt) => {
      expect(systemPrompt).toContain("Use the read tool to load a skill's file");
      expect(systemPrompt).not.toContain("pkg-internal");
      location = /<location>([^<]*pkg[^<]*review[^<]*)<\/location>/.exec(systemPrompt)?.[1] ?? "";
      return [
        { id: "skill", tool: "read", args: { path: location } },
        { id: "ref", tool: "read", args: { path: join(dirname(location), "checklist.md") } },
        { id: "rel", tool: "read", args: { path: "notes.txt" } },
      ];
    });
    expect(location).toBe(join(review, "SKILL.md"));
    expect(results.get("skill")).toEqual({ isError: false, text: PKG_SKILL_TEXT });
    expect(results.get("ref")).toEqual({ isError: false, text: "PKG-CHECKLIST-MARKER\n" });
    expect(results.get("rel")).toEqual({ isError: false, text: "PROJECT-NOTES\n" });
  });

  it("the rest of the package stays unreadable: its code, manifest, config, skills dir, a skill pi did not load", async () => {
    const { dirs, pkg, review } = await packageFixture();
    const results = await runTools(dirs, { extensionPaths: [pkg] }, (): Call[] => [
      { id: "code", tool: "read", args: { path: join(pkg, "index.ts") } },
      { id: "manifest", tool: "read", args: { path: join(pkg, "package.json") } },
      { id: "config", tool: "read", args: { path: join(pkg, "config.json") } },
      { id: "readme", tool: "read", args: { path: join(pkg, "skills", "README.md") } },
      { id: "excluded", tool: "read", args: { path: join(pkg, "skills", "internal", "SKILL.md") } },
      { id: "dotdot", tool: "read", args: { path: join(review, "..", "..", "config.json") } },
    ]);
    expectAllRefused(results, 6);
  });

  it("a flat package skill (skills/<name>.md) opens that file alone, never the skills dir it shares", async () => {
    const { dirs, pkg } = await packageFixture();
    const quick = await addFlatSkill(pkg);
    let location = "";
    const results = await runTools(dirs, { extensionPaths: [pkg] }, (systemPrompt) => {
      location = /<location>([^<]*quick\.md)<\/location>/.exec(systemPrompt)?.[1] ?? "";
      return [
        { id: "skill", tool: "read", args: { path: location } },
        { id: "bak", tool: "read", args: { path: `${quick}.bak` } },
        { id: "readme", tool: "read", args: { path: join(pkg, "skills", "README.md") } },
        { id: "excluded", tool: "read", args: { path: join(pkg, "skills", "internal", "SKILL.md") } },
        { id: "secret", tool: "read", args: { path: join(pkg, "skills", "internal", "secret.txt") } },
        { id: "dotdot", tool: "read", args: { path: join(quick, "..", "internal", "secret.txt") } },
      ];
    });
    expect(location).toBe(quick);
    expect(results.get("skill")).toEqual({ isError: false, text: QUICK_SKILL_TEXT });
    results.delete("skill");
    expectAllRefused(results, 5);
  });

  it("a SKILL.md at the package root opens nothing of the package", async () => {
    const dirs = await sessionDirs();
    const pkg = join(await tempDir("pf-oppkg-"), "rootpkg");
    const manifest = { name: "root-pkg", pi: { extensions: ["./index.ts"], skills: ["./"] } };
    await put(join(pkg, "package.json"), JSON.stringify(manifest));
    await put(join(pkg, "index.ts"), EXTENSION_CODE);
    await put(join(pkg, "config.json"), '{"token": "PKG-CONFIG-SECRET"}\n');
    await put(join(pkg, "SKILL.md"), "---\nname: root-skill\ndescription: Skill at the root\n---\n\nROOT\n");
    let location = "";
    const results = await runTools(dirs, { extensionPaths: [pkg] }, (systemPrompt) => {
      location = /<location>([^<]*root[^<]*)<\/location>/.exec(systemPrompt)?.[1] ?? "";
      return [
        { id: "skill", tool: "read", args: { path: location } },
        { id: "code", tool: "read", args: { path: join(pkg, "index.ts") } },
        { id: "config", tool: "read", args: { path: join(pkg, "config.json") } },
      ];
    });
    // pi lists it (the package and its skill loaded), but its dir is the package root.
    expect(location).toBe(join(pkg, "SKILL.md"));
    expectAllRefused(results, 3);
  });

  it("refuses write and edit into a package skill's dir (files unchanged, nothing created)", async () => {
    const { dirs, pkg, review } = await packageFixture();
    const before = await stat(join(review, "SKILL.md"));
    const results = await runTools(dirs, { extensionPaths: [pkg] }, (): Call[] => [
      { id: "w-new", tool: "write", args: { path: join(review, "new.md"), content: "pwned" } },
      { id: "w-dir", tool: "write", args: { path: join(review, "sub", "new.md"), content: "pwned" } },
      { id: "w-over", tool: "write", args: { path: join(review, "SKILL.md"), content: "pwned" } },
      { id: "w-code", tool: "write", args: { path: join(pkg, "index.ts"), content: "pwned" } },
      {
        id: "e-skill",
        tool: "edit",
        args: { path: join(review, "SKILL.md"), edits: [{ oldText: "Follow", newText: "Ignore" }] },
      },
    ]);
    expectAllRefused(results, 5);
    expect(await readFile(join(review, "SKILL.md"), "utf8")).toBe(PKG_SKILL_TEXT);
    expect((await stat(join(review, "SKILL.md"))).mtimeMs).toBe(before.mtimeMs);
    expect(await readFile(join(pkg, "index.ts"), "utf8")).toBe(EXTENSION_CODE);
    await expect(stat(join(review, "new.md"))).rejects.toThrow(/ENOENT/);
    await expect(stat(join(review, "sub"))).rejects.toThrow(/ENOENT/);
  });

  it("refuses symlinks in a package skill's dir that lead out of it (into the package or outside it)", async () => {
    const { dirs, pkg, review } = await packageFixture();
    const results = await runTools(dirs, { extensionPaths: [pkg] }, (): Call[] => [
      { id: "config", tool: "read", args: { path: join(review, "config.md") } },
      { id: "pkgroot", tool: "read", args: { path: join(review, "pkgroot", "index.ts") } },
      { id: "leak", tool: "read", args: { path: join(review, "leak.md") } },
    ]);
    expectAllRefused(results, 3);
    for (const id of ["config", "leak"])
      expect(results.get(id)?.text, id).toContain("(a symlink leads outside it)");
  });

  it("lists and opens no package skill when skills are switched off", async () => {
    const { dirs, pkg, review } = await packageFixture();
    let systemPrompt = "";
    const results = await runTools(dirs, { extensionPaths: [pkg], noSkills: true }, (prompt): Call[] => {
      systemPrompt = prompt;
      return [{ id: "skill", tool: "read", args: { path: join(review, "SKILL.md") } }];
    });
    expect(systemPrompt).not.toContain("pkg-review");
    expectAllRefused(results, 1);
  });
});

describe("createPolicyResourceLoader: skill dirs of operator packages", () => {
  async function load(policy: ResourcePolicy, projectDir: string, agentDir: string) {
    return createPolicyResourceLoader({
      policy,
      projectDir,
      agentDir,
      settingsManager: SettingsManager.inMemory({}, { projectTrusted: false }),
      agentsFiles: [],
    });
  }

  it("opens the real dirs of the package's loaded skills only (ls, find and grep too)", async () => {
    const { dirs, base, pkg, review } = await packageFixture();
    // The package reached through a symlinked extension path; another package whose manifest
    // declares no skills, next to a skills/ dir pi therefore does not load.
    await symlink(pkg, join(base, "pkg-link"));
    const other = join(base, "other-pkg");
    await put(join(other, "package.json"), JSON.stringify({ pi: { extensions: ["./index.ts"] } }));
    await put(join(other, "index.ts"), EXTENSION_CODE);
    await put(
      join(other, "skills", "lint", "SKILL.md"),
      "---\nname: lint\ndescription: Lints\n---\n\nLINT\n",
    );
    const { loader, operatorSkillRoots } = await load(
      { extensionPaths: [join(base, "pkg-link"), other] },
      dirs.projectDir,
      dirs.agentDir,
    );
    expect(loader.getSkills().skills.map((s) => s.filePath)).toEqual([
      join(base, "pkg-link", "skills", "review", "SKILL.md"),
    ]);
    expect(operatorSkillRoots).toEqual([await realpath(review)]);

    const tools = confinedFileTools(dirs.projectDir, ["ls", "find"], { readOnlyRoots: operatorSkillRoots });
    const run = async (name: string, params: Record<string, unknown>) => {
      const tool = tools.find((t) => t.name === name);
      const result = await tool?.execute("t", params, undefined, undefined, undefined as never);
      return (result?.content ?? []).map((c) => (c.type === "text" ? c.text : "")).join("");
    };
    const linked = join(base, "pkg-link", "skills", "review");
    expect(await run("ls", { path: linked })).toContain("checklist.md");
    expect(await run("find", { pattern: "*.md", path: review })).toContain("SKILL.md");
    for (const [name, params] of [
      ["ls", { path: pkg }],
      ["ls", { path: join(pkg, "skills") }],
      ["ls", { path: join(other, "skills", "lint") }],
      ["find", { pattern: "*", path: pkg }],
    ] as const) {
      await expect(run(name, params), `${name} ${params.path}`).rejects.toThrow(
        "Path escapes the project directory",
      );
    }
    // grep's operations (the tool itself needs rg): the skill dir yes, the package no.
    const grep = confinedGrepOperations(new ProjectConfinement(dirs.projectDir, operatorSkillRoots));
    expect(await grep.readFile(join(linked, "checklist.md"))).toBe("PKG-CHECKLIST-MARKER\n");
    expect(await grep.isDirectory(review)).toBe(true);
    await expect(Promise.resolve(grep.isDirectory(pkg))).rejects.toBeInstanceOf(PathEscapeError);
    await expect(Promise.resolve(grep.readFile(join(pkg, "config.json")))).rejects.toBeInstanceOf(
      PathEscapeError,
    );
  });

  it("opens nothing with skills off, and never a project skill though a package root contains the project", async () => {
    const { dirs, pkg } = await packageFixture();
    expect(
      (await load({ extensionPaths: [pkg], noSkills: true }, dirs.projectDir, dirs.agentDir))
        .operatorSkillRoots,
    ).toEqual([]);

    // An operator package whose root is the org dir, holding the project, declaring the
    // project's own skills dir as its skills: they load, as tenant text, and open nothing.
    const orgDir = dirname(dirs.projectDir);
    await put(
      join(dirs.projectDir, ".pi", "skills", "mine", "SKILL.md"),
      "---\nname: mine\ndescription: Tenant\n---\n\nT\n",
    );
    const manifest = { pi: { extensions: ["./ext/index.ts"], skills: ["./project/.pi/skills"] } };
    await put(join(orgDir, "package.json"), JSON.stringify(manifest));
    await put(join(orgDir, "ext", "index.ts"), EXTENSION_CODE);
    const { loader, operatorSkillRoots } = await load(
      { extensionPaths: [orgDir] },
      dirs.projectDir,
      dirs.agentDir,
    );
    expect(loader.getSkills().skills.map((s) => s.name)).toEqual(["mine"]);
    expect(operatorSkillRoots).toEqual([]);
  });

  it("opens a flat package skill's file alone: not its skills dir, a manifest-excluded skill, a name it prefixes", async () => {
    const { dirs, pkg, review } = await packageFixture();
    const quick = await addFlatSkill(pkg);
    const { loader, operatorSkillRoots } = await load(
      { extensionPaths: [pkg] },
      dirs.projectDir,
      dirs.agentDir,
    );
    expect(loader.getSkills().skills.map((s) => [s.name, s.baseDir])).toEqual([
      ["quick", join(pkg, "skills")],
      ["pkg-review", review],
    ]);
    expect(operatorSkillRoots).toEqual([await realpath(quick), await realpath(review)]);
    const grep = confinedGrepOperations(new ProjectConfinement(dirs.projectDir, operatorSkillRoots));
    expect(await grep.readFile(quick)).toBe(QUICK_SKILL_TEXT);
    for (const path of [
      join(pkg, "skills", "internal", "secret.txt"),
      join(pkg, "skills", "internal", "SKILL.md"),
      join(pkg, "skills", "README.md"),
      `${quick}.bak`,
    ]) {
      await expect(Promise.resolve(grep.readFile(path)), path).rejects.toBeInstanceOf(PathEscapeError);
    }
    await expect(Promise.resolve(grep.isDirectory(join(pkg, "skills")))).rejects.toBeInstanceOf(
      PathEscapeError,
    );
  });

  it("never counts a project skill swapped for a symlink into a package after the confined re-read", async () => {
    const { dirs, pkg, review } = await packageFixture();
    const internal = join(pkg, "skills", "internal");
    await put(join(internal, "secret.txt"), "PKG-INTERNAL-MARKER secret\n");
    // The tenant's own skill: plain files, so it passes the re-read, and pi lists it.
    const mine = join(dirs.projectDir, ".pi", "skills", "mine");
    await put(join(mine, "SKILL.md"), "---\nname: mine\ndescription: Mine\n---\n\nM\n");
    let swapped = false;
    race.afterConfine = async () => {
      // Its dir becomes a symlink to the package's manifest-excluded skill dir.
      await rename(mine, `${mine}.plain`);
      await symlink(internal, mine);
      swapped = true;
    };
    const { loader, operatorSkillRoots } = await load(
      { extensionPaths: [pkg] },
      dirs.projectDir,
      dirs.agentDir,
    );
    expect(swapped).toBe(true);
    expect(loader.getSkills().skills.map((s) => s.filePath)).toEqual([
      join(review, "SKILL.md"),
      join(mine, "SKILL.md"),
    ]);
    expect(operatorSkillRoots).toEqual([await realpath(review)]);
    const grep = confinedGrepOperations(new ProjectConfinement(dirs.projectDir, operatorSkillRoots));
    for (const path of [join(internal, "secret.txt"), join(mine, "secret.txt")]) {
      await expect(Promise.resolve(grep.readFile(path)), path).rejects.toBeInstanceOf(PathEscapeError);
    }
  });
});

describe("createPolicyResourceLoader: prompt templates of operator packages", () => {
  it("noPromptTemplates drops a package's prompt templates (pi loads them with the extension)", async () => {
    const { dirs, pkg } = await packageFixture();
    const manifest = JSON.parse(await readFile(join(pkg, "package.json"), "utf8"));
    manifest.pi.prompts = ["./prompts"];
    await put(join(pkg, "package.json"), JSON.stringify(manifest));
    await put(join(pkg, "prompts", "deploy.md"), "---\ndescription: Deploys\n---\nDeploy it\n");
    const load = (policy: ResourcePolicy) =>
      createPolicyResourceLoader({
        policy,
        projectDir: dirs.projectDir,
        agentDir: dirs.agentDir,
        settingsManager: SettingsManager.inMemory({}, { projectTrusted: false }),
        agentsFiles: [],
      });
    // Loaded by default (as the package's skills are) ...
    expect((await load({ extensionPaths: [pkg] })).loader.getPrompts().prompts.map((p) => p.name)).toEqual([
      "deploy",
    ]);
    // ... and dropped with prompt templates switched off, the extension and its skills still there.
    const { loader } = await load({ extensionPaths: [pkg], noPromptTemplates: true });
    expect(loader.getPrompts().prompts).toEqual([]);
    expect(loader.getSkills().skills.map((s) => s.name)).toEqual(["pkg-review"]);
    expect(loader.getExtensions().extensions).toHaveLength(1);
  });
});
