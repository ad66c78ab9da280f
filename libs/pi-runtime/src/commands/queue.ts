// Queue, retry and compaction commands. The setters write pi's settings, which for a session
// built by openSession are its own SettingsManager.inMemory(): nothing reaches a settings file
// or another session (hazard H10).
import { booleanArg, busy, type CommandHandler, ok, oneOfArg, optionalStringArg } from "./support.ts";

const QUEUE_MODES = ["all", "one-at-a-time"] as const;

/** `set_steering_mode {mode: "all" | "one-at-a-time"}` → no data (this session only). */
const setSteeringMode: CommandHandler = ({ session }, request) => {
  session.setSteeringMode(oneOfArg(request, "mode", QUEUE_MODES));
  return ok();
};

/** `set_follow_up_mode {mode: "all" | "one-at-a-time"}` → no data (this session only). */
const setFollowUpMode: CommandHandler = ({ session }, request) => {
  session.setFollowUpMode(oneOfArg(request, "mode", QUEUE_MODES));
  return ok();
};

/** `set_auto_compaction {enabled}` → no data (this session only). */
const setAutoCompaction: CommandHandler = ({ session }, request) => {
  session.setAutoCompactionEnabled(booleanArg(request, "enabled"));
  return ok();
};

/** `set_auto_retry {enabled}` → no data (this session only). */
const setAutoRetry: CommandHandler = ({ session }, request) => {
  session.setAutoRetryEnabled(booleanArg(request, "enabled"));
  return ok();
};

/** `abort_retry` → no data: cancels a pending auto-retry (the run then ends with the error). */
const abortRetry: CommandHandler = ({ session }) => {
  session.abortRetry();
  return ok();
};

/** `clear_queue` → `{steering: string[], followUp: string[]}`: the queued texts taken back. */
const clearQueue: CommandHandler = ({ session }) => ok(session.clearQueue());

/**
 * `compact {customInstructions?}` → pi's CompactionResult `{summary, firstKeptEntryId,
 * tokensBefore, estimatedTokensAfter?, usage?, details?}`. "busy" during a run (pi would abort
 * it). pi's errors: "Nothing to compact (session too small)", "Already compacted".
 */
const compact: CommandHandler = async ({ session, busy: running }, request) => {
  const instructions = optionalStringArg(request, "customInstructions");
  if (running) return busy(request.type);
  return ok(await session.compact(instructions));
};

/** Handlers of the queue/settings group, by command type. */
export const queueCommands: Record<string, CommandHandler> = {
  set_steering_mode: setSteeringMode,
  set_follow_up_mode: setFollowUpMode,
  set_auto_compaction: setAutoCompaction,
  set_auto_retry: setAutoRetry,
  abort_retry: abortRetry,
  clear_queue: clearQueue,
  compact,
};
