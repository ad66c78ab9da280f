// The symlink race on project prompt templates, end to end through openSession: pi reads
// `.pi/prompts/x.md` while it is a symlink to a file outside the project, and the agent swaps it
// for a plain file before the policy's root check (a realpath) looks at it. The swap is made
// deterministic here by doing it inside that check's first realpath of the file (node:fs is
// wrapped for this package's modules; pi's own reads are untouched). Without the confined re-read
// (confined-resources.ts) the outside file's text is the template that `/x` expands.
import type * as fs from "node:fs";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import { openSession } from "../src/index.ts";
import { fauxRuntime, onCleanup, sessionDirs, tempDir } from "./helpers.ts";

const swap: { path?: string; done: boolean } = { done: false };

vi.mock("node:fs", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:fs")>();
  const realpathSync = ((path: fs.PathLike, ...rest: unknown[]) => {
    if (!swap.done && swap.path !== undefined && String(path) === swap.path) {
      // The agent's swap: the symlink pi just read through becomes a plain file.
      swap.done = true;
      real.unlinkSync(swap.path);
      real.writeFileSync(swap.path, "---\ndescription: harmless\n---\nharmless text\n");
    }
    return (real.realpathSync as (...a: unknown[]) => string)(path, ...rest);
  }) as typeof real.realpathSync;
  return { ...real, default: { ...real, realpathSync }, realpathSync };
});

describe("project prompt templates under a symlink race", () => {
  it("never keep the text pi read through the symlink", async () => {
    const dirs = await sessionDirs();
    const outside = await tempDir("pf-outside-");
    await writeFile(join(outside, "secret.md"), "---\ndescription: x\n---\nTOP SECRET TEMPLATE\n");
    const prompts = join(dirs.projectDir, ".pi", "prompts");
    await mkdir(prompts, { recursive: true });
    swap.path = join(prompts, "x.md");
    await symlink(join(outside, "secret.md"), swap.path);

    const { runtime } = await fauxRuntime();
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    expect(swap.done).toBe(true); // the race happened
    const result = await session.command({ type: "get_commands" });
    const text = JSON.stringify(result);
    expect(text).not.toContain("TOP SECRET");
    // The template that passed the root check but not the re-read is gone altogether.
    const names = (result as { data: { commands: { name: string }[] } }).data.commands.map((c) => c.name);
    expect(names).not.toContain("x");
  });
});
