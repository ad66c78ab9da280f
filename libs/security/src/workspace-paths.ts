/**
 * The only place that builds filesystem paths from ids. Every id is checked against its pattern
 * first, and every result is asserted to stay under the workspace root, so a crafted id can never
 * name a path outside it. Layout (ARCHITECTURE.md "Workspace layout"):
 *   WORKSPACE_DIR/{org}/projects/{project}/                  the agent's cwd
 *   WORKSPACE_DIR/{org}/sessions/{project}/{session}.jsonl   pi transcripts
 */
import { resolve, sep } from "node:path";
import { isEntityId, isSlug } from "@pi-fleet/contracts";

/** Thrown when an id fails validation or a path would leave the workspace root. */
export class UnsafePathError extends Error {
  override readonly name = "UnsafePathError";
}

function assertSlug(kind: string, value: string): void {
  if (!isSlug(value)) throw new UnsafePathError(`invalid ${kind} id`);
}

function assertEntity(kind: string, value: string): void {
  if (!isEntityId(value)) throw new UnsafePathError(`invalid ${kind} id`);
}

function within(root: string, ...parts: string[]): string {
  const base = resolve(root);
  const full = resolve(base, ...parts);
  if (full !== base && !full.startsWith(base + sep)) throw new UnsafePathError("path escapes the workspace");
  return full;
}

/** Absolute path builders rooted at one workspace directory. */
export class WorkspacePaths {
  readonly root: string;

  /** @param root WORKSPACE_DIR (relative paths resolve against the process cwd). */
  constructor(root: string) {
    this.root = resolve(root);
  }

  /** `{root}/{org}` — everything an org owns. @throws UnsafePathError */
  orgDir(org: string): string {
    assertSlug("org", org);
    return within(this.root, org);
  }

  /** `{root}/{org}/projects/{project}` — the agent's working directory. @throws UnsafePathError */
  projectDir(org: string, project: string): string {
    assertSlug("org", org);
    assertSlug("project", project);
    return within(this.root, org, "projects", project);
  }

  /** `{root}/{org}/sessions/{project}` — the project's transcripts, outside the project tree. */
  sessionsDir(org: string, project: string): string {
    assertSlug("org", org);
    assertSlug("project", project);
    return within(this.root, org, "sessions", project);
  }

  /** `{root}/{org}/sessions/{project}/{session}.jsonl` — one pi transcript. @throws UnsafePathError */
  sessionFile(org: string, project: string, session: string): string {
    assertEntity("session", session);
    return within(this.sessionsDir(org, project), `${session}.jsonl`);
  }
}
