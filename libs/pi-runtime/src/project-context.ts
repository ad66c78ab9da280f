// Reads the project's own AGENTS.md for the system prompt. pi's default loader would read
// AGENTS.md/CLAUDE.md from the cwd up to "/" (hazard H2), leaking the org dir's files into the
// prompt; here only <projectDir>/AGENTS.md is read, never through a symlink, with a size cap.
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";

/** Largest AGENTS.md prefix put into the prompt, in bytes. */
export const AGENTS_FILE_MAX_BYTES = 64 * 1024;

/** A context file as pi's ResourceLoader.getAgentsFiles() returns it. */
export interface AgentsFile {
  /** Absolute path (shown to the model). */
  path: string;
  content: string;
}

/**
 * `<projectDir>/AGENTS.md` as UTF-8 text, or undefined when it is missing, a symlink (refused:
 * it could point outside the project), not a regular file, or unreadable. Content beyond
 * AGENTS_FILE_MAX_BYTES is cut and a note says so. Never throws.
 */
export async function readProjectAgentsFile(projectDir: string): Promise<AgentsFile | undefined> {
  const path = join(projectDir, "AGENTS.md");
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    // O_NOFOLLOW makes opening a symlink fail (ELOOP), with no window between check and open.
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    const stat = await handle.stat();
    if (!stat.isFile()) return undefined;
    const buffer = Buffer.alloc(Math.min(stat.size, AGENTS_FILE_MAX_BYTES));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    let content = new TextDecoder("utf-8").decode(buffer.subarray(0, bytesRead));
    if (stat.size > AGENTS_FILE_MAX_BYTES) {
      content += `\n\n[AGENTS.md truncated at ${AGENTS_FILE_MAX_BYTES} bytes]`;
    }
    return { path, content };
  } catch {
    return undefined;
  } finally {
    await handle?.close().catch(() => {});
  }
}
