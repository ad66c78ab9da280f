// Session tree commands: fork candidates, raw entries and the entry tree, with server paths
// removed from entries (see sanitize.ts). Read-only; navigation (fork, clone, …) is not offered.
import { publicEntry, publicTree } from "../sanitize.ts";
import { CommandArgError, type CommandHandler, ok, optionalStringArg } from "./support.ts";

/** `get_fork_messages` → `{messages: {entryId, text}[]}`: the user messages of the session. */
const getForkMessages: CommandHandler = ({ session }) =>
  ok({ messages: session.getUserMessagesForForking() });

/**
 * `get_entries {since?}` → `{entries: SessionEntry[], leafId: string | null}`: all entries (no
 * header), or those after the entry `since`; "invalid" with pi's `Entry not found: <id>`.
 */
const getEntries: CommandHandler = ({ session }, request) => {
  const since = optionalStringArg(request, "since");
  let entries = session.sessionManager.getEntries();
  if (since !== undefined) {
    const index = entries.findIndex((e) => e.id === since);
    if (index === -1) throw new CommandArgError(`Entry not found: ${since}`);
    entries = entries.slice(index + 1);
  }
  return ok({ entries: entries.map(publicEntry), leafId: session.sessionManager.getLeafId() });
};

/** `get_tree` → `{tree: SessionTreeNode[], leafId: string | null}` ({entry, children, label?, …}). */
const getTree: CommandHandler = ({ session }) =>
  ok({ tree: publicTree(session.sessionManager.getTree()), leafId: session.sessionManager.getLeafId() });

/** Handlers of the tree group, by command type. */
export const treeCommands: Record<string, CommandHandler> = {
  get_fork_messages: getForkMessages,
  get_entries: getEntries,
  get_tree: getTree,
};
