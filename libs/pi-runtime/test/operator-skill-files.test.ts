// Operator skills (PI_SKILL_PATHS) live outside the project, and pi's system prompt tells the
// model to load a skill by `read`ing the absolute path it lists. The read-only file tools (read,
// ls, grep, find) therefore also reach the session's operator skill roots; write and edit never
// do, and a symlink in an operator root, or a sibling dir that merely shares a root's name as a
// prefix, leads nowhere.
import { mkdir, readFile, realpath, stat, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fauxAssistantMessage, fauxToolCall, type TranscriptContext } from "@earendil-works/pi-ai";
import { describe, expect, it } from "vitest";
import {
  confinedFileTools,
  confinedFindOperations,
  confinedGrepOperations,
  confinedLsOperations,
  confinedWriteOperations,
  PathEscapeError,
  ProjectConfinement,
} from "../src/confined-file-operations.ts";
import { openSession } from "../src/index.ts";
import { fauxRuntime, onCleanup, recordingSink, sessionDirs, tempDir } from "./helpers.ts";

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
 * One turn of a session with `skillPaths` in which the (faux) model makes the calls `plan` returns
 * for the system prompt it was given; results by call id.
 */
async function runTools(
  dirs: Awaited<ReturnType<typeof sessionDirs>>,
  skillPaths: string[],
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
  const session = await openSession({ runtime, ...dirs, skillPaths });
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
    const results = await runTools(dirs, [skills], (systemPrompt) => {
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
    const results = await runTools(dirs, [skills], (): Call[] => [
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
    const results = await runTools(dirs, [skills], (): Call[] => [
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

  it("ignores a read-only root that contains the project dir (other projects stay unreadable)", async () => {
    const dirs = await sessionDirs();
    await put(join(dirs.root, "org", "other", "secret.txt"), "OTHER\n");
    const jail = new ProjectConfinement(dirs.projectDir, [await realpath(dirs.root)]);
    await expect(
      Promise.resolve(confinedGrepOperations(jail).readFile(join(dirs.root, "org", "other", "secret.txt"))),
    ).rejects.toBeInstanceOf(PathEscapeError);
  });
});
