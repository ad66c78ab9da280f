// New fleet sessions for fork, clone and new_session. pi's own code builds the new file's content
// (SessionManager.createBranchedSession on an in-memory copy of the live entries, or a fresh
// header); this module writes it to the path the fleet allocated and registers the session
// through the fleet's SessionFiles. Unlike pi, which names the file `<timestamp>_<uuid>.jsonl`
// and defers a file without an assistant message until the first answer, the fleet writes every
// new file at once: the next open of the fleet path must find the branch and the parent header.
import { access, rm, writeFile } from "node:fs/promises";
import type { AgentMessage } from "@earendil-works/pi-agent-core";
import {
  type AgentSession,
  type SessionEntry,
  type SessionHeader,
  SessionManager,
} from "@earendil-works/pi-coding-agent";
import { textPreview } from "@pi-fleet/contracts";
import { withoutPath } from "../errors.ts";
import { publicMessages } from "../sanitize.ts";
import type { CreatedSession, SessionFiles } from "../types.ts";

/** pi's error when a non-empty branch is forked or cloned from a session that has no file yet. */
export const NOT_SAVED_YET =
  "This session has not been saved yet. Wait for the first assistant response before cloning or forking it.";

/** The content of a new pi session file: its header and its entries (in file order). */
export interface SessionFileContent {
  header: SessionHeader;
  entries: SessionEntry[];
}

/**
 * What pi's fork writes for the branch that ends at `leafId` of the live session: the result of
 * createBranchedSession (the root → leaf path without label entries, the labels of path entries
 * re-added at its end, a fresh UUIDv7 session id), with the live session's file as the header's
 * `parentSession`, as pi records it. Reads nothing from disk: the live entries are the file's.
 * @throws Error with pi's "This session has not been saved yet. …" when the live session has no
 *   file yet (pi forks from the file); pi's "Entry <id> not found" for an unknown `leafId`
 */
export async function branchContent(session: AgentSession, leafId: string): Promise<SessionFileContent> {
  const sourceFile = session.sessionFile;
  if (!sourceFile || !(await exists(sourceFile))) throw new Error(NOT_SAVED_YET);
  const live = session.sessionManager;
  const header = live.getHeader();
  if (!header) throw new Error(NOT_SAVED_YET);
  // In memory, pi's createBranchedSession replaces the copy's entries with the branch and writes
  // nothing; path entries are copied, so the live session's objects are never changed.
  const copy = SessionManager.inMemory(live.getCwd(), undefined, [header, ...live.getEntries()]);
  copy.createBranchedSession(leafId);
  const branched = copy.getHeader() as SessionHeader;
  return { header: { ...branched, parentSession: sourceFile }, entries: copy.getEntries() };
}

/**
 * A new empty session as pi starts one: a fresh header (UUIDv7 id, the live session's cwd) with
 * `parentSession` when given (a session file path), and no entries.
 */
export function emptyContent(session: AgentSession, parentSession?: string): SessionFileContent {
  const fresh = SessionManager.inMemory(
    session.sessionManager.getCwd(),
    parentSession ? { parentSession } : undefined,
  );
  return { header: fresh.getHeader() as SessionHeader, entries: [] };
}

/**
 * Writes `content` as a new fleet session and registers it: allocates the id and path
 * (`files.allocate`), creates the file exclusively (never over an existing file), then
 * `files.register`. A failed registration removes the file again.
 * @returns the new fleet session id
 * @throws the allocation or registration error; a write error without the file's path
 */
export async function createFleetSession(
  files: SessionFiles,
  content: SessionFileContent,
  origin: CreatedSession["origin"],
  parentSessionId?: string,
): Promise<string> {
  const slot = await files.allocate();
  const lines = [content.header, ...content.entries].map((e) => `${JSON.stringify(e)}\n`).join("");
  try {
    await writeFile(slot.sessionFile, lines, { flag: "wx" });
  } catch (err) {
    throw withoutPath(err, "Could not write the new session file");
  }
  try {
    await files.register(slot, describe(content, origin, parentSessionId));
  } catch (err) {
    await rm(slot.sessionFile, { force: true }).catch(() => {});
    throw err;
  }
  return slot.sessionId;
}

/**
 * The text of a user message's content as pi's fork reports it (`selectedText`): a string as is,
 * else its text parts joined without a separator.
 */
export function userMessageText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .filter((p): p is { type: "text"; text: string } => p?.type === "text" && typeof p.text === "string")
    .map((p) => p.text)
    .join("");
}

/** What register() learns about the written content. */
function describe(
  content: SessionFileContent,
  origin: CreatedSession["origin"],
  parentSessionId: string | undefined,
): CreatedSession {
  const messages: AgentMessage[] = [];
  let piSessionName: string | undefined;
  for (const entry of content.entries) {
    if (entry.type === "message") messages.push(entry.message);
    // pi's getSessionName: the latest session_info entry wins; an empty name clears it.
    if (entry.type === "session_info") piSessionName = entry.name?.trim() || undefined;
  }
  const firstUser = messages.find((m) => m.role === "user");
  return {
    origin,
    ...(parentSessionId !== undefined ? { parentSessionId } : {}),
    ...(piSessionName !== undefined ? { piSessionName } : {}),
    messages: publicMessages(messages),
    ...(firstUser ? { firstMessage: textPreview(userMessageText(firstUser.content), 200) } : {}),
  };
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
