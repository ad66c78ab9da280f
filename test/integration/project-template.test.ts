// PI_FLEET_PROJECT_TEMPLATE_DIR: the worker seeds a project dir from the template when it first
// creates it — files copied, build caches skipped, symlinks that leave the template not followed
// (not copied at all) — and never again: not on a second session, not after a worker restart.
// Real gateway, worker and Redis; the only fake is the LLM.
import { execFileSync } from "node:child_process";
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  unlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { ConfigError, describeStartupFailure, loadEnv } from "@pi-fleet/config";
import { createLogger } from "@pi-fleet/observability";
import { waitFor } from "@pi-fleet/testkit";
import { startWorker, type WorkerNode } from "@pi-fleet/worker";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  assertProjectTemplateDir,
  prepareProjectDir,
  TEMPLATE_SKIPPED_NAMES,
} from "../../apps/worker/src/project-template.ts";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const PROJECT = "seeded";
let root = "";
let template = "";
let outside = "";
let stack: InProcessStack;
const extraWorkers: WorkerNode[] = [];

/** Files (path → content) of the template; `[skip]` ones must not reach the project. */
const FILES: Record<string, string> = {
  "README.md": "template readme\n",
  "AGENTS.md": "be nice\n",
  "src/index.js": "console.log('hi');\n",
  "src/nested/deep.txt": "deep\n",
  "packages/app/src/main.ts": "export {};\n",
  "readonly.txt": "read only in the template\n",
  "node_modules/pkg/index.js": "[skip]",
  ".git/HEAD": "[skip]",
  "packages/app/dist/out.js": "[skip]",
  "packages/app/node_modules/x/y.js": "[skip]",
  "build/out.bin": "[skip]",
  ".next/cache.json": "[skip]",
  ".cache/blob": "[skip]",
  "__pycache__/m.cpython-312.pyc": "[skip]",
  "py/__pycache__/n.pyc": "[skip]",
  ".venv/bin/python": "[skip]",
  "target/debug/app": "[skip]",
};

async function writeTree(base: string, files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(base, path)), { recursive: true });
    await writeFile(join(base, path), content);
  }
}

/** Every path under `dir` (relative, sorted), symlinks not followed. */
async function listTree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.map(String).sort();
}

async function runPrompt(session: string, text: string): Promise<void> {
  const res = await stack.call("POST", `/v1/projects/${PROJECT}/sessions/${session}/prompt`, { text });
  expect(res.status).toBe(200);
  const { runId } = res.json as { runId: string };
  let status = "";
  await waitFor(
    async () => {
      const run = await stack.call("GET", `/v1/projects/${PROJECT}/sessions/${session}/runs/${runId}`);
      status = (run.json as { status: string }).status;
      return !["queued", "running"].includes(status);
    },
    { timeoutMs: 15_000 },
  );
  expect(status).toBe("finished");
}

async function newSession(): Promise<string> {
  const res = await stack.call("POST", `/v1/projects/${PROJECT}/sessions`, {});
  expect(res.status).toBe(200);
  return (res.json as { id: string }).id;
}

const projectDir = () => join(stack.workspace, "default", "projects", PROJECT);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "pf-template-"));
  template = join(root, "template");
  outside = join(root, "outside");
  await writeTree(template, FILES);
  await writeTree(outside, { "secret.txt": "outside secret\n" });
  await chmod(join(template, "readonly.txt"), 0o444);
  await chmod(join(template, "src", "nested"), 0o555);
  // Symlinks: relative ones inside the template are copied as links; the rest are skipped.
  await symlink("src/index.js", join(template, "link-inside"));
  await symlink("src", join(template, "link-dir-inside"));
  await symlink("../README.md", join(template, "packages", "readme-up"));
  await symlink("missing.txt", join(template, "dangling-inside"));
  await symlink(join(outside, "secret.txt"), join(template, "escape-abs"));
  await symlink("../outside/secret.txt", join(template, "escape-rel"));
  await symlink(outside, join(template, "escape-dir"));
  await symlink(join(template, "README.md"), join(template, "abs-inside"));
  await symlink("escape-rel", join(template, "chain-out")); // inside lexically, resolves outside
  execFileSync("mkfifo", [join(template, "fifo")]);

  stack = await startInProcessStack(inject("redisUrl"), "template", {
    env: { PI_FLEET_PROJECT_TEMPLATE_DIR: template },
  });
  expect((await stack.call("POST", "/v1/projects", { name: PROJECT })).status).toBe(200);
});

afterAll(async () => {
  await Promise.all(extraWorkers.map((w) => w.close(0)));
  await stack?.close();
  if (root) {
    await chmod(join(template, "src", "nested"), 0o755).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  }
});

describe("project template seeding", () => {
  it("copies the template into a new project dir, skipping caches and escaping symlinks", async () => {
    const session = await newSession();
    await runPrompt(session, "[[reply:first]]");
    const dir = projectDir();

    for (const [path, content] of Object.entries(FILES)) {
      if (content === "[skip]") continue;
      expect(await readFile(join(dir, path), "utf8"), path).toBe(content);
    }
    const tree = await listTree(dir);
    for (const name of TEMPLATE_SKIPPED_NAMES) {
      expect(
        tree.some((p) => p.split("/").includes(name)),
        name,
      ).toBe(false);
    }
    for (const skipped of ["escape-abs", "escape-rel", "escape-dir", "abs-inside", "chain-out", "fifo"]) {
      expect(tree, skipped).not.toContain(skipped);
    }
    // Inside links are copied verbatim: they point into the project, not the template.
    expect(await readlink(join(dir, "link-inside"))).toBe("src/index.js");
    expect(await readFile(join(dir, "link-inside"), "utf8")).toBe(FILES["src/index.js"]);
    expect(await readlink(join(dir, "link-dir-inside"))).toBe("src");
    expect(await readlink(join(dir, "packages", "readme-up"))).toBe("../README.md");
    expect((await lstat(join(dir, "dangling-inside"))).isSymbolicLink()).toBe(true);
    expect(JSON.stringify(tree)).not.toContain("secret");
    // The agent can edit what was copied (owner write added), and a purge can delete it.
    expect((await stat(join(dir, "readonly.txt"))).mode & 0o200).toBe(0o200);
    expect((await stat(join(dir, "src", "nested"))).mode & 0o700).toBe(0o700);
    // No staging leftovers next to the project dir.
    expect(await readdir(dirname(dir))).toEqual([PROJECT]);
  });

  it("gives the agent the seeded files", async () => {
    const session = await newSession();
    await runPrompt(session, "[[bash:cat README.md link-inside]]");
    const history = await stack.call("GET", `/v1/projects/${PROJECT}/sessions/${session}`);
    expect(JSON.stringify(history.json)).toContain("template readme");
  });

  it("never seeds again: not for a new session, not after a worker restart", async () => {
    const dir = projectDir();
    // The user's changes, made through the agent's own shell.
    const edit = await newSession();
    await runPrompt(edit, "[[bash:echo changed by user > README.md && rm src/index.js && touch mine.txt]]");
    const expectUserState = async () => {
      expect(await readFile(join(dir, "README.md"), "utf8")).toBe("changed by user\n");
      await expect(stat(join(dir, "src", "index.js"))).rejects.toMatchObject({ code: "ENOENT" });
      expect((await stat(join(dir, "mine.txt"))).isFile()).toBe(true);
    };
    await expectUserState();

    // Another session on the same owner.
    await runPrompt(await newSession(), "[[reply:second open]]");
    await expectUserState();

    // A restart: the old worker goes, a new one takes the project over and opens it again.
    await Promise.all(stack.workers.map((w) => w.close(0)));
    stack.workers.length = 0;
    const env = loadEnv({
      REDIS_URL: inject("redisUrl"),
      WORKSPACE_DIR: stack.workspace,
      PI_FLEET_KEY_PREFIX: stack.prefix,
      PI_FLEET_PROJECT_TEMPLATE_DIR: template,
      PI_FLEET_WORKER_ID: "w-restarted",
      LOG_LEVEL: "warn",
    });
    extraWorkers.push(await startWorker(env, createLogger("test", "warn"), {}));
    await runPrompt(await newSession(), "[[reply:after restart]]");
    await expectUserState();
  });

  it("seeds concurrent first opens once and leaves no staging dirs", async () => {
    const parent = join(root, "concurrent", "projects");
    const target = join(parent, "p1");
    const outcomes = await Promise.all(Array.from({ length: 4 }, () => prepareProjectDir(target, template)));
    expect(outcomes.filter((o) => o === "seeded")).toHaveLength(1);
    expect(outcomes.filter((o) => o === "existed")).toHaveLength(3);
    expect(await readdir(parent)).toEqual(["p1"]);
    await unlink(join(target, "README.md"));
    expect(await prepareProjectDir(target, template)).toBe("existed");
    await expect(stat(join(target, "README.md"))).rejects.toMatchObject({ code: "ENOENT" });
    // Without a template: an empty dir.
    expect(await prepareProjectDir(join(parent, "p2"), undefined)).toBe("created");
    expect(await readdir(join(parent, "p2"))).toEqual([]);
  });
});

describe("PI_FLEET_PROJECT_TEMPLATE_DIR startup check", () => {
  const startLine = async (templateDir: string, workspace = join(root, "ws")): Promise<string> => {
    const env = loadEnv({
      REDIS_URL: inject("redisUrl"),
      WORKSPACE_DIR: workspace,
      PI_FLEET_PROJECT_TEMPLATE_DIR: templateDir,
      LOG_LEVEL: "silent",
    });
    const err = await startWorker(env, createLogger("test", "silent"), {}).then(
      (w) => {
        extraWorkers.push(w);
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    return describeStartupFailure("pi-fleet worker", err)!;
  };

  it("refuses a missing dir, a file, and a dir overlapping the workspace with one line", async () => {
    expect(await startLine(join(root, "nope"))).toBe(
      "pi-fleet worker: invalid configuration: PI_FLEET_PROJECT_TEMPLATE_DIR cannot be read (ENOENT)",
    );
    expect(await startLine(join(template, "README.md"))).toBe(
      "pi-fleet worker: invalid configuration: PI_FLEET_PROJECT_TEMPLATE_DIR is not a directory",
    );
    expect(await startLine(template, join(template, "workspace"))).toBe(
      "pi-fleet worker: invalid configuration: PI_FLEET_PROJECT_TEMPLATE_DIR must not overlap WORKSPACE_DIR",
    );
    expect(await startLine(join(stack.workspace, "default"), stack.workspace)).toContain("must not overlap");
    await expect(assertProjectTemplateDir("relative/dir", root)).rejects.toThrow("must be an absolute path");
    await expect(assertProjectTemplateDir(template, join(root, "ws"))).resolves.toBeUndefined();
  });
});
