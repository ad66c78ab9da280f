// The file tools stay inside the project dir: real pi sessions whose (faux) model asks read,
// write and edit for `..` escapes, absolute paths elsewhere and symlinks leading outside; plus
// the ls/grep/find operations, which sessions do not enable, checked on their own.
import { mkdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fauxAssistantMessage, fauxToolCall } from "@earendil-works/pi-ai";
import { describe, expect, it } from "vitest";
import {
  confinedFindOperations,
  confinedLsOperations,
  PathEscapeError,
  ProjectConfinement,
} from "../src/confined-file-operations.ts";
import { openSession } from "../src/index.ts";
import { fauxRuntime, onCleanup, recordingSink, sessionDirs } from "./helpers.ts";

interface ToolResultMessage {
  role: "toolResult";
  toolCallId: string;
  isError: boolean;
  content: { type: string; text?: string }[];
}

/** A project with `secret.txt` next to it (outside) and links from inside to it. */
async function fixture() {
  const dirs = await sessionDirs();
  const outside = join(dirs.root, "org", "secret.txt");
  await writeFile(outside, "TOP SECRET\n");
  await writeFile(join(dirs.projectDir, "notes.txt"), "hello world\n");
  await mkdir(join(dirs.projectDir, "sub"));
  await writeFile(join(dirs.projectDir, "sub", "inner.txt"), "inner\n");
  await symlink(outside, join(dirs.projectDir, "link.txt"));
  await symlink(join(dirs.root, "org"), join(dirs.projectDir, "linkdir"));
  await symlink(join(dirs.root, "org", "created-by-link.txt"), join(dirs.projectDir, "dangling.txt"));
  await symlink("sub/inner.txt", join(dirs.projectDir, "inside-link.txt"));
  return { dirs, outside };
}

/** Runs one turn in which the model makes `calls` (in order, by id), returns results by id. */
async function runTools(
  dirs: Awaited<ReturnType<typeof sessionDirs>>,
  calls: { id: string; tool: string; args: Parameters<typeof fauxToolCall>[1] }[],
): Promise<Map<string, { isError: boolean; text: string }>> {
  const { runtime, faux } = await fauxRuntime();
  faux.setResponses([
    fauxAssistantMessage(
      calls.map((c) => fauxToolCall(c.tool, c.args, { id: c.id })),
      { stopReason: "toolUse" },
    ),
    fauxAssistantMessage("done"),
  ]);
  const session = await openSession({ runtime, ...dirs });
  onCleanup(() => session.dispose());
  const outcome = await session.run("go", {}, recordingSink().sink);
  expect(outcome.status).toBe("finished");
  const results = new Map<string, { isError: boolean; text: string }>();
  for (const m of session.messages() as ToolResultMessage[]) {
    if (m.role !== "toolResult") continue;
    results.set(m.toolCallId, {
      isError: m.isError,
      text: m.content.map((c) => c.text ?? "").join(""),
    });
  }
  return results;
}

describe("file tool confinement (real sessions)", () => {
  it("refuses reads outside the project: `..`, absolute paths, symlinks to files and dirs", async () => {
    const { dirs } = await fixture();
    const results = await runTools(dirs, [
      { id: "dotdot", tool: "read", args: { path: "../secret.txt" } },
      { id: "passwd", tool: "read", args: { path: "/etc/passwd" } },
      { id: "link", tool: "read", args: { path: "link.txt" } },
      { id: "linkdir", tool: "read", args: { path: "linkdir/secret.txt" } },
      { id: "sneaky", tool: "read", args: { path: "sub/../../secret.txt" } },
      { id: "environ", tool: "read", args: { path: "/proc/self/environ" } },
    ]);
    expect(results.size).toBe(6);
    for (const [id, r] of results) {
      expect(r.isError, id).toBe(true);
      expect(r.text, id).toContain("Path escapes the project directory: ");
      expect(r.text, id).not.toContain("TOP SECRET");
      expect(r.text, id).not.toContain("root:");
      // Never a server path beyond the project dir that the model did not write itself.
      expect(r.text, id).not.toContain(dirs.root);
    }
    expect(results.get("dotdot")?.text).toContain("Path escapes the project directory: ../secret.txt");
    expect(results.get("passwd")?.text).toContain("Path escapes the project directory: /etc/passwd");
    expect(results.get("link")?.text).toContain("link.txt (a symlink leads outside it)");
  });

  it("reads relative, absolute-inside and in-project symlink paths", async () => {
    const { dirs } = await fixture();
    const results = await runTools(dirs, [
      { id: "rel", tool: "read", args: { path: "notes.txt" } },
      { id: "abs", tool: "read", args: { path: join(dirs.projectDir, "sub", "inner.txt") } },
      { id: "dotdot-inside", tool: "read", args: { path: "sub/../notes.txt" } },
      { id: "inside-link", tool: "read", args: { path: "inside-link.txt" } },
      { id: "missing", tool: "read", args: { path: "nope.txt" } },
    ]);
    expect(results.get("rel")).toEqual({ isError: false, text: "hello world\n" });
    expect(results.get("abs")).toEqual({ isError: false, text: "inner\n" });
    expect(results.get("dotdot-inside")).toEqual({ isError: false, text: "hello world\n" });
    expect(results.get("inside-link")).toEqual({ isError: false, text: "inner\n" });
    expect(results.get("missing")?.isError).toBe(true);
    expect(results.get("missing")?.text).toContain("ENOENT");
    expect(results.get("missing")?.text).not.toContain(dirs.root);
  });

  it("refuses writes and edits outside (files outside stay unchanged, nothing is created)", async () => {
    const { dirs, outside } = await fixture();
    const before = await stat(outside);
    const results = await runTools(dirs, [
      { id: "w-dotdot", tool: "write", args: { path: "../secret.txt", content: "pwned" } },
      { id: "w-abs", tool: "write", args: { path: outside, content: "pwned" } },
      { id: "w-link", tool: "write", args: { path: "link.txt", content: "pwned" } },
      { id: "w-dangling", tool: "write", args: { path: "dangling.txt", content: "pwned" } },
      { id: "w-linkdir", tool: "write", args: { path: "linkdir/new/file.txt", content: "pwned" } },
      {
        id: "e-dotdot",
        tool: "edit",
        args: { path: "../secret.txt", edits: [{ oldText: "TOP", newText: "NO" }] },
      },
      { id: "e-link", tool: "edit", args: { path: "link.txt", edits: [{ oldText: "TOP", newText: "NO" }] } },
    ]);
    expect(results.size).toBe(7);
    for (const [id, r] of results) {
      expect(r.isError, id).toBe(true);
      expect(r.text, id).toContain("Path escapes the project directory: ");
      expect(r.text, id).not.toContain(dirs.root);
    }
    // The refusal names the file asked for (pi's mkdir of an outside parent creates nothing).
    expect(results.get("w-dotdot")?.text).toBe("Path escapes the project directory: ../secret.txt");
    expect(results.get("w-linkdir")?.text).toBe(
      "Path escapes the project directory: linkdir/new/file.txt (a symlink leads outside it)",
    );
    expect(await readFile(outside, "utf8")).toBe("TOP SECRET\n");
    expect((await stat(outside)).mtimeMs).toBe(before.mtimeMs);
    await expect(stat(join(dirs.root, "org", "created-by-link.txt"))).rejects.toThrow(/ENOENT/);
    await expect(stat(join(dirs.root, "org", "new"))).rejects.toThrow(/ENOENT/);
  });

  it("writes and edits inside: relative, absolute, new subdirectories, through in-project links", async () => {
    const { dirs } = await fixture();
    const results = await runTools(dirs, [
      { id: "w-rel", tool: "write", args: { path: "a/b/new.txt", content: "new\n" } },
      { id: "w-abs", tool: "write", args: { path: join(dirs.projectDir, "abs.txt"), content: "abs\n" } },
      {
        id: "e-rel",
        tool: "edit",
        args: { path: "notes.txt", edits: [{ oldText: "world", newText: "there" }] },
      },
      {
        id: "e-link",
        tool: "edit",
        args: { path: "inside-link.txt", edits: [{ oldText: "inner", newText: "edited" }] },
      },
    ]);
    for (const [id, r] of results) expect(r.isError, `${id}: ${r.text}`).toBe(false);
    expect(await readFile(join(dirs.projectDir, "a", "b", "new.txt"), "utf8")).toBe("new\n");
    expect(await readFile(join(dirs.projectDir, "abs.txt"), "utf8")).toBe("abs\n");
    expect(await readFile(join(dirs.projectDir, "notes.txt"), "utf8")).toBe("hello there\n");
    expect(await readFile(join(dirs.projectDir, "sub", "inner.txt"), "utf8")).toBe("edited\n");
  });
});

describe("ProjectConfinement and the ls/find operations", () => {
  it("shows paths without server prefixes and refuses escapes for listing", async () => {
    const { dirs } = await fixture();
    const jail = new ProjectConfinement(dirs.projectDir);
    expect(jail.display(join(dirs.projectDir, "x", "y"))).toBe("x/y");
    expect(jail.display(dirs.projectDir)).toBe(".");
    expect(jail.display(join(dirs.root, "org", "secret.txt"))).toBe("../secret.txt");
    expect(jail.display("/etc/passwd")).toBe("/etc/passwd");
    const ls = confinedLsOperations(jail);
    expect((await ls.readdir(dirs.projectDir)).sort()).toContain("notes.txt");
    await expect(Promise.resolve(ls.readdir(join(dirs.projectDir, "..")))).rejects.toBeInstanceOf(
      PathEscapeError,
    );
    await expect(Promise.resolve(ls.readdir(join(dirs.projectDir, "linkdir")))).rejects.toBeInstanceOf(
      PathEscapeError,
    );
    expect(await ls.exists(join(dirs.projectDir, "missing"))).toBe(false);
    await expect(Promise.resolve(ls.stat(join(dirs.projectDir, "link.txt")))).rejects.toThrow(
      "Path escapes the project directory: link.txt",
    );
  });

  it("find globs below the project without descending symlinks", async () => {
    const { dirs } = await fixture();
    const find = confinedFindOperations(new ProjectConfinement(dirs.projectDir));
    const found = await find.glob("*.txt", dirs.projectDir, { ignore: ["**/.git/**"], limit: 100 });
    const names = found.map((p) => p.slice(dirs.projectDir.length + 1)).sort();
    expect(names).toEqual(["dangling.txt", "inside-link.txt", "link.txt", "notes.txt", "sub/inner.txt"]);
    expect(names.some((n) => n.startsWith("linkdir/"))).toBe(false);
    await expect(Promise.resolve(find.exists(join(dirs.projectDir, "..")))).rejects.toBeInstanceOf(
      PathEscapeError,
    );
  });
});
