// Operator pi resources (PI_EXTENSION_PATHS, PI_SKILL_PATHS, PI_PROMPT_PATHS) are shared by every
// org: a worker refuses to start when one overlaps the workspace volume (inside it, by real path
// through a symlink too, or containing it), and starts with ones beside it.
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "@pi-fleet/config";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertOperatorPaths } from "../../apps/worker/src/operator-paths.ts";

let base: string;
let workspace: string;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "pf-operator-paths-"));
  workspace = join(base, "workspace");
  await mkdir(join(workspace, "orgs", "acme"), { recursive: true });
  await mkdir(join(base, "skills"), { recursive: true });
  await symlink(join(workspace, "orgs", "acme"), join(base, "linked"));
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

const env = (
  paths: Partial<Record<"PI_EXTENSION_PATHS" | "PI_SKILL_PATHS" | "PI_PROMPT_PATHS", string>>,
) => ({
  PI_EXTENSION_PATHS: "",
  PI_SKILL_PATHS: "",
  PI_PROMPT_PATHS: "",
  WORKSPACE_DIR: workspace,
  ...paths,
});

describe("assertOperatorPaths", () => {
  it("accepts operator paths beside the workspace, and none", async () => {
    await expect(assertOperatorPaths(env({}))).resolves.toBeUndefined();
    await expect(
      assertOperatorPaths(env({ PI_SKILL_PATHS: `${join(base, "skills")},${join(base, "missing")}` })),
    ).resolves.toBeUndefined();
    // A sibling whose name merely starts like the workspace's.
    await expect(
      assertOperatorPaths(env({ PI_PROMPT_PATHS: `${workspace}-prompts` })),
    ).resolves.toBeUndefined();
  });

  it.each([
    ["PI_SKILL_PATHS", () => join(workspace, "orgs", "acme")],
    ["PI_SKILL_PATHS", () => join(base, "linked")],
    ["PI_EXTENSION_PATHS", () => join(workspace, "orgs", "acme", "projects", "p", "ext.ts")],
    ["PI_PROMPT_PATHS", () => base],
    ["PI_SKILL_PATHS", () => workspace],
  ] as const)("refuses %s overlapping the workspace (%#)", async (name, path) => {
    const attempt = assertOperatorPaths(env({ [name]: `${join(base, "skills")},${path()}` }));
    await expect(attempt).rejects.toBeInstanceOf(ConfigError);
    await expect(attempt).rejects.toThrow(`${name} entry ${path()} must not overlap WORKSPACE_DIR`);
  });
});
