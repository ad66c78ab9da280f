// Project skills and prompt templates are re-read through the project's confinement after pi
// loaded them (confined-resources.ts): pi reads them following symlinks, so an agent swapping a
// file between a symlink and a plain file during a load could have pi read another file. Here the
// loader's answers stand for what pi read during such a swap: text that differs from the plain
// file now in place, or a file that is (again) a symlink out of the project.
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ResourceLoader } from "@earendil-works/pi-coding-agent";
import { describe, expect, it } from "vitest";
import { confineProjectResources } from "../src/confined-resources.ts";
import { tempDir } from "./helpers.ts";

type Skills = ReturnType<ResourceLoader["getSkills"]>;
type Prompts = ReturnType<ResourceLoader["getPrompts"]>;

function loaderOf(skills: Skills["skills"], prompts: Prompts["prompts"]): ResourceLoader {
  return {
    getSkills: () => ({ skills, diagnostics: [] }),
    getPrompts: () => ({ prompts, diagnostics: [] }),
  } as unknown as ResourceLoader;
}

describe("confineProjectResources", () => {
  it("keeps what matches a confined read, drops what pi read from elsewhere", async () => {
    const root = await tempDir();
    const project = join(root, "project");
    const prompts = join(project, ".pi", "prompts");
    const skillDir = join(project, ".pi", "skills", "deploy");
    await mkdir(prompts, { recursive: true });
    await mkdir(skillDir, { recursive: true });
    const secret = join(root, "secret.md");
    await writeFile(secret, "---\ndescription: TOP SECRET\n---\nTOP SECRET BODY\n");
    await writeFile(join(prompts, "ok.md"), "---\ndescription: fine\n---\nReview $1\n");
    await writeFile(join(prompts, "swapped.md"), "plain text now\n");
    await symlink(secret, join(prompts, "link.md"));
    await writeFile(join(skillDir, "SKILL.md"), "---\ndescription: Deploys\n---\nsteps\n");
    const operator = join(root, "operator.md");
    await writeFile(operator, "operator text\n");

    const prompt = (name: string, filePath: string, content: string) =>
      ({ name, description: "", content, filePath, sourceInfo: {} }) as unknown as Prompts["prompts"][number];
    const skill = (name: string, description: string) =>
      ({
        name,
        description,
        filePath: join(skillDir, "SKILL.md"),
        baseDir: skillDir,
      }) as unknown as Skills["skills"][number];
    const loader = loaderOf(
      [skill("deploy", "Deploys"), skill("deploy", "TOP SECRET")],
      [
        prompt("ok", join(prompts, "ok.md"), "Review $1"),
        // pi read the secret while swapped.md was a symlink; it is a plain file again now.
        prompt("swapped", join(prompts, "swapped.md"), "TOP SECRET BODY"),
        // Still a symlink out of the project: never read through the confinement.
        prompt("link", join(prompts, "link.md"), "TOP SECRET BODY"),
        // Outside the project (an operator path): trusted as loaded.
        prompt("operator", operator, "anything"),
      ],
    );
    await confineProjectResources(loader, project);
    expect(loader.getPrompts().prompts.map((p) => p.name)).toEqual(["ok", "operator"]);
    expect(loader.getSkills().skills.map((s) => s.description)).toEqual(["Deploys"]);
    expect(JSON.stringify([loader.getPrompts(), loader.getSkills()])).not.toContain("TOP SECRET");
  });
});
