// Session management commands: fork, clone, new_session and switch_session with pi's semantics
// (AgentSessionRuntime.fork / newSession of 0.87.1 and rpc-mode's handlers), adapted to the
// fleet, where a session is addressed by id. pi replaces the current session by the new one; here
// the new session is a separate fleet session (its id is in the answer) and the session the
// command ran on stays open and unchanged, so pi's session_shutdown / session_start events of the
// replacement are not emitted. Extensions can still cancel through session_before_fork /
// session_before_switch, as in pi.

import type { AgentSession } from "@earendil-works/pi-coding-agent";
import { isEntityId } from "@pi-fleet/contracts";
import type { CommandRequest, CommandResult, SessionFiles } from "../types.ts";
import { branchContent, createFleetSession, emptyContent, userMessageText } from "./session-files.ts";
import {
  busy,
  CommandArgError,
  type CommandContext,
  type CommandHandler,
  ok,
  optionalStringArg,
  stringArg,
} from "./support.ts";

/** pi's error for a fork target that is not a user message (or no entry at all). */
const INVALID_FORK_ENTRY = "Invalid entry ID for forking";

/**
 * `fork {entryId}` → `{text, cancelled: false, sessionId}`: a new fleet session holding the branch
 * up to (before) the user message `entryId`, and `text`, that message's text (pi's selectedText,
 * for the client to edit and resend). Forking at the first user message gives a session without
 * messages (only the entries before it: model and thinking level changes, the system message).
 * The new pi file records this session's file as `parentSession`. `{cancelled: true}` when an
 * extension cancelled (nothing created). "invalid" with pi's "Invalid entry ID for forking";
 * "busy" during a run (pi would abort it); pi's "This session has not been saved yet. …" before
 * the first assistant answer.
 */
const fork: CommandHandler = async (ctx, request) => {
  const entryId = stringArg(request, "entryId");
  const refused = refusal(ctx, request);
  if (refused) return refused;
  const { session } = ctx;
  if (await cancelledByExtension(session, { type: "session_before_fork", entryId, position: "before" })) {
    return ok({ cancelled: true });
  }
  const selected = session.sessionManager.getEntry(entryId);
  if (selected?.type !== "message" || selected.message.role !== "user") {
    throw new CommandArgError(INVALID_FORK_ENTRY);
  }
  const text = userMessageText(selected.message.content);
  const content = selected.parentId
    ? await branchContent(session, selected.parentId)
    : emptyContent(session, session.sessionFile);
  const sessionId = await createFleetSession(files(ctx), content, "fork");
  return ok({ text, cancelled: false, sessionId });
};

/**
 * `clone` → `{cancelled: false, sessionId}`: a new fleet session holding the current branch up to
 * and including the leaf (pi: fork at the leaf with position "at"), with this session's file as
 * `parentSession`. `{cancelled: true}` when an extension cancelled. pi's "Cannot clone session:
 * no current entry selected" for an empty session; "busy" during a run; pi's "This session has
 * not been saved yet. …" before the first assistant answer.
 */
const clone: CommandHandler = async (ctx, request) => {
  const refused = refusal(ctx, request);
  if (refused) return refused;
  const { session } = ctx;
  const leafId = session.sessionManager.getLeafId();
  if (!leafId) throw new Error("Cannot clone session: no current entry selected");
  if (await cancelledByExtension(session, { type: "session_before_fork", entryId: leafId, position: "at" })) {
    return ok({ cancelled: true });
  }
  if (!session.sessionManager.getEntry(leafId)) throw new CommandArgError(INVALID_FORK_ENTRY);
  const sessionId = await createFleetSession(files(ctx), await branchContent(session, leafId), "clone");
  return ok({ cancelled: false, sessionId });
};

/**
 * `new_session {parentSession?}` → `{cancelled: false, sessionId}`: a new, empty fleet session.
 * `parentSession` is a fleet session id of the same project (never a path); its file is recorded
 * as the pi header's `parentSession`, as pi records the path it is given. Without it the header
 * has no parent, as in pi. `{cancelled: true}` when an extension cancelled (session_before_switch,
 * reason "new"). "invalid" for a parentSession that is not a session id or not a session of this
 * project; "busy" during a run (pi would abort it).
 */
const newSession: CommandHandler = async (ctx, request) => {
  const parent = optionalStringArg(request, "parentSession");
  if (parent !== undefined && !isEntityId(parent)) {
    throw new CommandArgError(
      `${request.type}: "parentSession" must be a session id of this project, not a path`,
    );
  }
  const refused = refusal(ctx, request);
  if (refused) return refused;
  const parentFile = parent === undefined ? undefined : await files(ctx).sessionFile(parent);
  if (parent !== undefined && parentFile === undefined)
    throw new CommandArgError(`Session not found: ${parent}`);
  if (await cancelledByExtension(ctx.session, { type: "session_before_switch", reason: "new" })) {
    return ok({ cancelled: true });
  }
  const content = emptyContent(ctx.session, parentFile);
  const sessionId = await createFleetSession(files(ctx), content, "new_session", parent);
  return ok({ cancelled: false, sessionId });
};

/**
 * `switch_session` → always "unsupported": pi's switch changes which session a connection
 * drives, but a fleet request names its session in the URL, so there is nothing to switch (and
 * `sessionPath` would be a server path). Clients address the other session by its id instead.
 */
const switchSession: CommandHandler = () => ({
  success: false,
  code: "unsupported",
  error:
    "switch_session is not supported: each request names its session in the URL; " +
    "use the other session's id there (…/sessions/{id}/…) instead of switching",
});

/** Handlers of the session-management group, by command type. */
export const sessionCommands: Record<string, CommandHandler> = {
  fork,
  clone,
  new_session: newSession,
  switch_session: switchSession,
};

/** Why a session-creating command cannot run now: no SessionFiles here, or a run is active. */
function refusal(ctx: CommandContext, request: CommandRequest): CommandResult | undefined {
  if (!ctx.files) {
    return {
      success: false,
      code: "unsupported",
      error: `${request.type} is not available here: it needs the fleet's session files`,
    };
  }
  return ctx.busy ? busy(request.type) : undefined;
}

/** The context's SessionFiles (refusal() has checked that there are some). */
function files(ctx: CommandContext): SessionFiles {
  if (!ctx.files) throw new Error("no session files");
  return ctx.files;
}

/** pi's emitBeforeFork / emitBeforeSwitch: true when an extension handler cancelled. */
async function cancelledByExtension(
  session: AgentSession,
  event:
    | { type: "session_before_fork"; entryId: string; position: "before" | "at" }
    | { type: "session_before_switch"; reason: "new" },
): Promise<boolean> {
  const runner = session.extensionRunner;
  if (!runner.hasHandlers(event.type)) return false;
  const result = await runner.emit(event);
  return result?.cancel === true;
}
