/**
 * Startup check of the operator's pi resources (`PI_EXTENSION_PATHS`, `PI_SKILL_PATHS`,
 * `PI_PROMPT_PATHS`, worker only) against the workspace volume. Operator resources are shared by
 * every org: a skill dir is readable by every org's agent (confined-file-operations.ts read-only
 * roots), an extension is code the worker runs. One that lies inside `WORKSPACE_DIR` would hand
 * an org's files to every other org, or let an agent edit what every session loads; one that
 * contains the workspace would open every project. Both are refused at startup, as for
 * `PI_FLEET_PROJECT_TEMPLATE_DIR` (project-template.ts).
 */
import { realpath } from "node:fs/promises";
import { resolve, sep } from "node:path";
import { ConfigError, type Env, splitList } from "@pi-fleet/config";

const NAMES = ["PI_EXTENSION_PATHS", "PI_SKILL_PATHS", "PI_PROMPT_PATHS"] as const;

/**
 * @throws ConfigError naming the variable and path when an operator resource path (by real path;
 *   a missing one as given, pi skips it at load) overlaps `WORKSPACE_DIR` (either contains the other)
 */
export async function assertOperatorPaths(
  env: Pick<Env, (typeof NAMES)[number] | "WORKSPACE_DIR">,
): Promise<void> {
  const workspace = await realpath(env.WORKSPACE_DIR).catch(() => resolve(env.WORKSPACE_DIR));
  for (const name of NAMES) {
    for (const path of splitList(env[name])) {
      const real = await realpath(path).catch(() => resolve(path));
      if (isWithin(real, workspace) || isWithin(workspace, real)) {
        throw new ConfigError(`invalid configuration: ${name} entry ${path} must not overlap WORKSPACE_DIR`);
      }
    }
  }
}

function isWithin(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}
