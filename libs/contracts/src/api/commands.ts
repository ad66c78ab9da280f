/**
 * `POST …/sessions/{id}/commands` bodies: one schema per pi RPC command the fleet runs as a
 * command, with the argument names, types and optionality of pi 0.87.1's RPC mode (`RpcCommand`
 * in @earendil-works/pi-coding-agent `dist/modes/rpc/rpc-types.d.ts`; the handlers are
 * libs/pi-runtime/src/commands/*.ts). Every schema rejects unknown fields. Like every pi command,
 * each takes an optional string `id` (pi's request id): accepted so a pi client's JSON posts
 * unchanged, and ignored except by `bash`, whose `bash_execution_update` events carry it (so a
 * bash's id is at most {@link BASH_ID_MAX_LENGTH} characters: every output event repeats it).
 * Beyond that the schemas check names, types, optionality and pi's enums only, no lengths: pi
 * limits none of its arguments (the route's body limit bounds them; the worker refuses a session
 * name over SESSION_NAME_MAX_LENGTH once trimmed), and what pi refuses it refuses with its own
 * text (`Entry not found: <id>`, `Model not found: <provider>/<id>`, …).
 *
 * An optional field (`id` included) that is null counts as absent: the worker's handlers read it
 * so (`optionalStringArg`, …), and a client that serialises an unset field as null must not get a
 * 400 for it. {@link withoutNullOptionals} drops those fields before the schema is applied, on the
 * REST route and on the pi RPC socket alike; a required field that is null stays a wrong type
 * (400).
 *
 * pi's `prompt`, `steer`, `follow_up` and `abort` have routes of their own and no schema here.
 * The route validates in two steps: `type` against {@link CommandEnvelope}; then, when
 * {@link commandSchema} knows the type, the body against that command's schema (400
 * `PF_ERR_REQUEST_INVALID` naming the path). A type without a schema goes to the worker, which
 * answers 400 `PF_ERR_COMMAND_UNSUPPORTED` (`Unknown command: <type>`, pi's text).
 */
import { type Static, type TObject, type TProperties, Type } from "typebox";
import { THINKING_LEVELS } from "../thinking.ts";
import { StringEnum } from "./common.ts";

/**
 * Longest `id` (pi's request id) a `bash` command may carry: each of its `bash_execution_update`
 * events (one per chunk of output) repeats the id on the session stream. Other commands ignore
 * their id, so theirs has no limit.
 */
export const BASH_ID_MAX_LENGTH = 128;

/** What the schemas say of a null optional field (see {@link withoutNullOptionals}). */
const NULL_IS_ABSENT = "null counts as absent.";

/** pi's thinking levels (pi-agent-core `ThinkingLevel`): the contract's six plus `max`. */
export const PI_COMMAND_THINKING_LEVELS = [...THINKING_LEVELS, "max"] as const;

/** pi's queue delivery modes (`set_steering_mode`, `set_follow_up_mode`). */
export const PI_QUEUE_MODES = ["all", "one-at-a-time"] as const;

/** pi's optional request id, on every command. */
const RequestId = Type.Optional(
  Type.String({
    description: `pi's request id. Accepted and ignored, except by \`bash\`; ${NULL_IS_ABSENT}`,
  }),
);

/** A `bash`'s request id: its `bash_execution_update` events carry it (hence the limit). */
const BashRequestId = Type.Optional(
  Type.String({
    maxLength: BASH_ID_MAX_LENGTH,
    description: `pi's request id: the command's \`bash_execution_update\` events carry it; ${NULL_IS_ABSENT}`,
  }),
);

/**
 * The schema of pi command `type`: `{type, id?, ...properties}`, no other field (`properties` may
 * replace `id`). The `const` of `type` is what {@link commandSchema} indexes by.
 */
function command<const T extends string, P extends TProperties>(type: T, description: string, properties: P) {
  return Type.Object(
    { type: Type.Literal(type), id: RequestId, ...properties },
    { additionalProperties: false, description },
  );
}

// ---------------------------------------------------------------------------------------------
// State (libs/pi-runtime/src/commands/state.ts)
// ---------------------------------------------------------------------------------------------

/** pi `{type: "get_state"}`. */
export const GetStateCommand = command(
  "get_state",
  "→ the session state (pi's RpcSessionState without server paths; `sessionId` is the fleet session id).",
  {},
);
/** pi `{type: "get_messages"}`. */
export const GetMessagesCommand = command(
  "get_messages",
  "→ `{messages}`: pi's AgentMessages (no system messages).",
  {},
);
/** pi `{type: "get_session_stats"}`. */
export const GetSessionStatsCommand = command(
  "get_session_stats",
  "→ pi's SessionStats without `sessionFile`.",
  {},
);
/** pi `{type: "get_last_assistant_text"}`. */
export const GetLastAssistantTextCommand = command(
  "get_last_assistant_text",
  "→ `{text}` (null before the first answer).",
  {},
);
/** pi `{type: "set_session_name", name: string}`. */
export const SetSessionNameCommand = command(
  "set_session_name",
  "Names the session (trimmed; a blank name answers pi's `Session name cannot be empty`; one over 200 characters once trimmed answers `success: false` too, as at session creation: the name is listed with the session and carried into its forks' and clones' names; pi sets no limit).",
  { name: Type.String() },
);
/** pi `{type: "get_commands"}`. */
export const GetCommandsCommand = command(
  "get_commands",
  "→ `{commands}`: extension commands, prompt templates and skills.",
  {},
);

// ---------------------------------------------------------------------------------------------
// Model and thinking level (model.ts)
// ---------------------------------------------------------------------------------------------

/** pi `{type: "get_available_models"}`. */
export const GetAvailableModelsCommand = command(
  "get_available_models",
  "→ `{models}`: the org's models with auth.",
  {},
);
/** pi `{type: "set_model", provider: string, modelId: string}`. */
export const SetModelCommand = command(
  "set_model",
  "Switches the session's model (409 while a run is active).",
  { provider: Type.String(), modelId: Type.String() },
);
/** pi `{type: "cycle_model"}`. */
export const CycleModelCommand = command(
  "cycle_model",
  "Switches to the next available model (409 while a run is active).",
  {},
);
/** pi `{type: "set_thinking_level", level: ThinkingLevel}`. */
export const SetThinkingLevelCommand = command(
  "set_thinking_level",
  "Sets the thinking level (pi clamps it to the model).",
  { level: StringEnum(PI_COMMAND_THINKING_LEVELS) },
);
/** pi `{type: "cycle_thinking_level"}`. */
export const CycleThinkingLevelCommand = command(
  "cycle_thinking_level",
  "→ `{level}`, or null when the model does not support thinking.",
  {},
);
/** pi `{type: "get_available_thinking_levels"}`. */
export const GetAvailableThinkingLevelsCommand = command(
  "get_available_thinking_levels",
  "→ `{levels}` for the current model.",
  {},
);

// ---------------------------------------------------------------------------------------------
// Queue modes, retry, compaction (queue.ts)
// ---------------------------------------------------------------------------------------------

/** pi `{type: "set_steering_mode", mode: "all" | "one-at-a-time"}`. */
export const SetSteeringModeCommand = command(
  "set_steering_mode",
  "How queued steering messages are delivered (this session only).",
  { mode: StringEnum(PI_QUEUE_MODES) },
);
/** pi `{type: "set_follow_up_mode", mode: "all" | "one-at-a-time"}`. */
export const SetFollowUpModeCommand = command(
  "set_follow_up_mode",
  "How queued follow-up messages are delivered (this session only).",
  { mode: StringEnum(PI_QUEUE_MODES) },
);
/** pi `{type: "set_auto_compaction", enabled: boolean}`. */
export const SetAutoCompactionCommand = command(
  "set_auto_compaction",
  "Turns automatic compaction on or off (this session only).",
  { enabled: Type.Boolean() },
);
/** pi `{type: "set_auto_retry", enabled: boolean}`. */
export const SetAutoRetryCommand = command(
  "set_auto_retry",
  "Turns automatic retries on or off (this session only).",
  { enabled: Type.Boolean() },
);
/** pi `{type: "abort_retry"}`. */
export const AbortRetryCommand = command("abort_retry", "Cancels a pending automatic retry.", {});
/** pi `{type: "clear_queue"}`. */
export const ClearQueueCommand = command(
  "clear_queue",
  "→ `{steering, followUp}`: the queued texts, taken back.",
  {},
);
/** pi `{type: "compact", customInstructions?: string}`. */
export const CompactCommand = command(
  "compact",
  "Compacts the context → pi's CompactionResult (409 while a run is active).",
  { customInstructions: Type.Optional(Type.String({ description: NULL_IS_ABSENT })) },
);

// ---------------------------------------------------------------------------------------------
// User bash (bash.ts)
// ---------------------------------------------------------------------------------------------

/** pi `{type: "bash", command: string, excludeFromContext?: boolean}`. */
export const BashCommand = command(
  "bash",
  "Runs a user shell command in the session's sandbox and records it (pi's `!cmd`) → pi's BashResult without `fullOutputPath`.",
  {
    id: BashRequestId,
    command: Type.String(),
    excludeFromContext: Type.Optional(Type.Boolean({ description: NULL_IS_ABSENT })),
  },
);
/** pi `{type: "abort_bash"}`. */
export const AbortBashCommand = command("abort_bash", "Kills the running user bash commands.", {});

// ---------------------------------------------------------------------------------------------
// Tree (tree.ts)
// ---------------------------------------------------------------------------------------------

/** pi `{type: "get_fork_messages"}`. */
export const GetForkMessagesCommand = command(
  "get_fork_messages",
  "→ `{messages: {entryId, text}[]}`: the user messages to fork at.",
  {},
);
/** pi `{type: "get_entries", since?: string}`. */
export const GetEntriesCommand = command(
  "get_entries",
  "→ `{entries, leafId}`: all session entries, or those after the entry `since`.",
  { since: Type.Optional(Type.String({ description: NULL_IS_ABSENT })) },
);
/** pi `{type: "get_tree"}`. */
export const GetTreeCommand = command("get_tree", "→ `{tree, leafId}`: the session's entry tree.", {});

// ---------------------------------------------------------------------------------------------
// Session management (sessions.ts) and export (export.ts)
// ---------------------------------------------------------------------------------------------

/** pi `{type: "fork", entryId: string}`. */
export const ForkCommand = command(
  "fork",
  "A new session holding the branch before the user message `entryId` → `{text, cancelled, sessionId}`.",
  { entryId: Type.String() },
);
/** pi `{type: "clone"}`. */
export const CloneCommand = command(
  "clone",
  "A new session holding the current branch → `{cancelled, sessionId}`.",
  {},
);
/** pi `{type: "new_session", parentSession?: string}`. */
export const NewSessionCommand = command("new_session", "A new, empty session → `{cancelled, sessionId}`.", {
  parentSession: Type.Optional(
    Type.String({
      description: `A session id of this project (pi takes a file path; the fleet refuses paths); ${NULL_IS_ABSENT}`,
    }),
  ),
});
/**
 * pi `{type: "switch_session", sessionPath: string}`. Always refused here (400
 * `PF_ERR_COMMAND_UNSUPPORTED`): a request names its session in the URL. `sessionPath` is optional
 * (pi requires it) so the refusal, not a missing field, is what a client reads.
 */
export const SwitchSessionCommand = command(
  "switch_session",
  "Not supported over REST (address the other session by its id in the URL); the pi RPC socket supports it.",
  { sessionPath: Type.Optional(Type.String({ description: NULL_IS_ABSENT })) },
);
/** pi `{type: "export_html", outputPath?: string}`. */
export const ExportHtmlCommand = command(
  "export_html",
  "→ `{html}`: the session as pi's self-contained HTML page, returned inline (no server path).",
  {
    outputPath: Type.Optional(
      Type.String({
        description: `pi's output file: refused (the page is returned in the answer); ${NULL_IS_ABSENT}`,
      }),
    ),
  },
);

/** Every command schema, in the order of pi's `RpcCommand` union. */
const COMMAND_SCHEMA_LIST = [
  ClearQueueCommand,
  NewSessionCommand,
  GetStateCommand,
  SetModelCommand,
  CycleModelCommand,
  GetAvailableModelsCommand,
  SetThinkingLevelCommand,
  CycleThinkingLevelCommand,
  GetAvailableThinkingLevelsCommand,
  SetSteeringModeCommand,
  SetFollowUpModeCommand,
  CompactCommand,
  SetAutoCompactionCommand,
  SetAutoRetryCommand,
  AbortRetryCommand,
  BashCommand,
  AbortBashCommand,
  GetSessionStatsCommand,
  ExportHtmlCommand,
  SwitchSessionCommand,
  ForkCommand,
  CloneCommand,
  GetForkMessagesCommand,
  GetEntriesCommand,
  GetTreeCommand,
  GetLastAssistantTextCommand,
  SetSessionNameCommand,
  GetMessagesCommand,
  GetCommandsCommand,
] as const;

/** Command schemas by `type`. */
const COMMAND_SCHEMAS: ReadonlyMap<string, TObject> = new Map(
  COMMAND_SCHEMA_LIST.map((schema) => [schema.properties.type.const, schema]),
);

/** The command types with a schema (the worker's command switch, libs/pi-runtime COMMAND_TYPES). */
export const COMMAND_REQUEST_TYPES: readonly CommandType[] = COMMAND_SCHEMA_LIST.map(
  (schema) => schema.properties.type.const,
);

/** The schema of command `type`, or undefined for a type the fleet has no command for. */
export function commandSchema(type: string): TObject | undefined {
  return COMMAND_SCHEMAS.get(type);
}

/**
 * `body` without the optional fields of its command (`schema`, from {@link commandSchema}) that
 * are null: the one rule of the REST route and the pi RPC socket, applied before the schema. The
 * worker's handlers (`optionalStringArg`, `optionalBooleanArg`) read a null optional argument as
 * absent. Required fields, fields the schema does not know and other values are kept (the schema
 * judges them: a null required field is a 400).
 */
export function withoutNullOptionals(
  schema: TObject,
  body: Record<string, unknown>,
): Record<string, unknown> {
  const required = new Set(schema.required ?? []);
  // fromEntries defines own properties: a `__proto__` key stays a field (for the schema to refuse).
  return Object.fromEntries(
    Object.entries(body).filter(
      ([key, value]) => value !== null || !Object.hasOwn(schema.properties, key) || required.has(key),
    ),
  );
}

/**
 * What `POST …/commands` validates before anything else: a `type` (other fields are checked
 * against the command's own schema next, see {@link commandSchema}).
 */
export const CommandEnvelope = Type.Object(
  { type: Type.String({ minLength: 1, maxLength: 64, pattern: "^[a-z_]+$" }) },
  { additionalProperties: true },
);

/**
 * `POST …/commands` body as documented (OpenAPI): one of the command schemas, told apart by
 * `type`. The route validates it in two steps (see the module comment); other types answer 400.
 */
export const CommandRequest = Type.Union([...COMMAND_SCHEMA_LIST], {
  discriminator: { propertyName: "type" },
  description:
    "A pi RPC command (pi 0.87.1 `RpcCommand`): `type` plus that command's own fields, no others. " +
    "An optional field (`id` included) that is null counts as absent; a required one that is null is a 400. " +
    "`prompt`, `steer`, `follow_up` and `abort` have routes of their own; any other type answers 400 " +
    "`PF_ERR_COMMAND_UNSUPPORTED`.",
});

/** A command body (any of {@link CommandRequest}). */
export type CommandRequestBody = Static<typeof CommandRequest>;
/** A command type with a schema. */
export type CommandType = (typeof COMMAND_SCHEMA_LIST)[number]["properties"]["type"]["const"];

/** `POST …/commands` answer (pi's response without `id` and `command`: the body's `type` instead). */
export const CommandResponse = Type.Object({
  type: Type.String(),
  success: Type.Boolean(),
  data: Type.Optional(Type.Unknown()),
  error: Type.Optional(Type.String()),
});
