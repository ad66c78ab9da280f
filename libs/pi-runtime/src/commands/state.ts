// Read-mostly session commands: state, messages, stats, the last answer, the session name and
// the (always empty here) list of slash commands. Server paths are left out of every answer, and
// the session is named by its fleet id, never by pi's header id.
import { SESSION_NAME_MAX_LENGTH } from "@pi-fleet/contracts";
import { publicMessages } from "../sanitize.ts";
import { fromPiThinkingLevel } from "../thinking-levels.ts";
import { CommandArgError, type CommandHandler, ok, stringArg } from "./support.ts";

/**
 * `get_state` → pi's RpcSessionState without `sessionFile`, with `sessionId` the fleet session id
 * (the id of the session's URL, what switch_session takes; pi's is its header id), `model` as our
 * ModelRow (absent when none), `thinkingLevel` in the contract's names, and `messageCount`
 * counting the messages get_messages returns (pi counts its system messages too): `{model?,
 * thinkingLevel, isStreaming, isCompacting, steeringMode, followUpMode, sessionId, sessionName?,
 * autoCompactionEnabled, messageCount, pendingMessageCount}`.
 */
const getState: CommandHandler = ({ session, sessionId, runtime }) => {
  const model = session.model ? runtime.findModel(session.model.provider, session.model.id) : undefined;
  return ok({
    ...(model ? { model } : {}),
    thinkingLevel: fromPiThinkingLevel(session.thinkingLevel),
    isStreaming: session.isStreaming,
    isCompacting: session.isCompacting,
    steeringMode: session.steeringMode,
    followUpMode: session.followUpMode,
    sessionId,
    ...(session.sessionName !== undefined ? { sessionName: session.sessionName } : {}),
    autoCompactionEnabled: session.autoCompactionEnabled,
    messageCount: publicMessages(session.messages).length,
    pendingMessageCount: session.pendingMessageCount,
  });
};

/** `get_messages` → `{messages}`: pi's AgentMessages minus system messages and `fullOutputPath`. */
const getMessages: CommandHandler = ({ session }) => ok({ messages: publicMessages(session.messages) });

/**
 * `get_session_stats` → pi's SessionStats without `sessionFile` and with the fleet session id as
 * `sessionId`: `{sessionId, userMessages, assistantMessages, toolCalls, toolResults,
 * totalMessages, tokens {input, output, cacheRead, cacheWrite, total}, cost, contextUsage?}`
 * (aggregated over all entries, compacted ones included).
 */
const getSessionStats: CommandHandler = ({ session, sessionId }) => {
  const { sessionFile: _path, sessionId: _piId, ...stats } = session.getSessionStats();
  return ok({ sessionId, ...stats });
};

/** `get_last_assistant_text` → `{text: string | null}` (null before the first answer). */
const getLastAssistantText: CommandHandler = ({ session }) =>
  ok({ text: session.getLastAssistantText() ?? null });

/**
 * `set_session_name {name}` → no data; trimmed, persisted by pi as a session_info entry. "invalid"
 * with pi's `Session name cannot be empty`, or when longer than SESSION_NAME_MAX_LENGTH once
 * trimmed (the fleet's limit, as at session creation; pi has none).
 */
const setSessionName: CommandHandler = ({ session }, request) => {
  const name = stringArg(request, "name").trim();
  if (!name) throw new CommandArgError("Session name cannot be empty"); // pi's text
  // Counted in code points, as the API's schemas count (a name of 200 emoji is 200 characters).
  if ([...name].length > SESSION_NAME_MAX_LENGTH) {
    throw new CommandArgError(`Session name too long: at most ${SESSION_NAME_MAX_LENGTH} characters`);
  }
  session.setSessionName(name);
  return ok();
};

/**
 * `get_commands` → `{commands: {name, description?, source}[]}` as pi lists them (extension
 * commands, prompt templates, skills) but without `sourceInfo` (file paths). The isolated
 * resource loader discovers none, so the list is empty today.
 */
const getCommands: CommandHandler = ({ session }) => {
  const commands = [
    ...session.extensionRunner
      .getRegisteredCommands()
      .map((c) => entry(c.invocationName, c.description, "extension")),
    ...session.promptTemplates.map((t) => entry(t.name, t.description, "prompt")),
    ...session.resourceLoader.getSkills().skills.map((s) => entry(`skill:${s.name}`, s.description, "skill")),
  ];
  return ok({ commands });
};

function entry(name: string, description: string | undefined, source: "extension" | "prompt" | "skill") {
  return { name, ...(description !== undefined ? { description } : {}), source };
}

/** Handlers of the state group, by command type. */
export const stateCommands: Record<string, CommandHandler> = {
  get_state: getState,
  get_messages: getMessages,
  get_session_stats: getSessionStats,
  get_last_assistant_text: getLastAssistantText,
  set_session_name: setSessionName,
  get_commands: getCommands,
};
