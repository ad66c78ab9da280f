// Plain public types of the pi runtime adapter. Nothing here references pi's own types, so the
// rest of the fleet can depend on these shapes without importing pi.
import type { ProviderApi, RunUsage, ThinkingLevel, WireEvent } from "@pi-fleet/contracts";

/** One model of a tenant-supplied provider, as the fleet stores it per org. */
export interface ProviderModelSpec {
  /** The model id sent to the provider. */
  id: string;
  /** Display name; defaults to `id`. */
  name?: string;
  /** Whether the model supports thinking levels other than "off"; default false. */
  reasoning?: boolean;
  /** Accepted input kinds; default `["text"]`. */
  input?: ("text" | "image")[];
  /** Context window in tokens; default 128000 (pi's default). */
  contextWindow?: number;
  /** Max output tokens per response; default 16384 (pi's default). */
  maxTokens?: number;
  /** pi thinking level → provider-specific value (null marks a level unsupported). */
  thinkingLevelMap?: Record<string, string | null>;
  /** pi `compat` overrides for the provider API (for example `supportsDeveloperRole`). */
  compat?: Record<string, unknown>;
}

/** A tenant-supplied provider (an OpenAI- or Anthropic-compatible endpoint). */
export interface ProviderSpec {
  /** Provider id; must match contracts' PROVIDER_ID_PATTERN and must not be a built-in pi provider id. */
  provider: string;
  /** Display name; defaults to `provider`. */
  name?: string;
  /** http(s) base URL, for example `http://127.0.0.1:8080/v1`. */
  baseUrl: string;
  api: ProviderApi;
  /** Literal API key (never resolved as `!cmd` or `$VAR`). Absent for keyless local servers. */
  apiKey?: string;
  models: ProviderModelSpec[];
}

/** Everything that determines one org's model runtime. */
export interface OrgRuntimeSpec {
  orgId: string;
  /** Changes whenever providers/keys change; the cache rebuilds on a new revision. */
  revision: string;
  /** Custom providers (tenant-supplied). */
  providers: ProviderSpec[];
  /**
   * Keys for pi's built-in providers, by provider id (e.g. `{anthropic: "...", openai: "..."}`),
   * from the worker's secrets for the default org. Empty values are ignored.
   */
  builtinKeys: Record<string, string>;
}

/** A model as the fleet lists it. */
export interface ModelRow {
  provider: string;
  id: string;
  name: string;
  /** pi-ai API id, e.g. "anthropic-messages". */
  api: string;
  reasoning: boolean;
  /** True when this org's runtime has auth for the provider (always false in the built-in catalog). */
  available: boolean;
  input: ("text" | "image")[];
  /** Tokens. */
  contextWindow: number;
  /** Max output tokens. */
  maxTokens: number;
  /** The level a new session on this model starts with when none is given (pi's "medium", clamped). */
  defaultThinkingLevel?: ThinkingLevel;
}

/** One org's isolated pi model runtime (providers and credentials), built by RuntimeCache. */
export interface OrgRuntime {
  readonly orgId: string;
  readonly revision: string;
  /** Custom providers first (in spec order), then pi's built-in catalog, with availability. */
  listModels(): ModelRow[];
  findModel(provider: string, modelId: string): ModelRow | undefined;
}

/** A dialog method of pi's extension UI (the ones that wait for an answer). */
export type UiDialogMethod = "select" | "confirm" | "input" | "editor";

/**
 * A dialog request in pi's RPC wire shape: `{type: "extension_ui_request", id, method, …}` with
 * `select {title, options, timeout?}`, `confirm {title, message, timeout?}`,
 * `input {title, placeholder?, timeout?}` or `editor {title, prefill?}`. `id` is a random UUID.
 */
export interface UiRequest {
  type: "extension_ui_request";
  id: string;
  method: UiDialogMethod;
  [field: string]: unknown;
}

/** A client's answer to a dialog (pi's `extension_ui_response` minus `type`/`id`). */
export type UiAnswer = { value: string } | { confirmed: boolean } | { cancelled: true };

/**
 * Where a session's extension UI goes (the fleet side: stream, pending store, answers).
 * Without one, extensions see `ctx.hasUI === false` and pi's no-op UI.
 */
export interface ExtensionUiHost {
  /**
   * Shows a dialog to the session's clients and resolves with the first answer. `signal` aborts
   * when pi stops waiting (the dialog's timeout or the extension's abort signal): withdraw the
   * request then and resolve `undefined`; the extension already got the default. Resolving
   * `undefined` (or rejecting) at any time gives the extension pi's default answer.
   */
  request(request: UiRequest, signal: AbortSignal): Promise<UiAnswer | undefined>;
  /**
   * Publishes an out-of-band event: a fire-and-forget `extension_ui_request` (`notify`,
   * `setStatus`, `setWidget`, `setTitle`, `set_editor_text`), an `extension_error`, or a pi event
   * outside a run (a command's `session_info_changed`, …). Called synchronously from extension
   * code and pi's event queue: must not throw, block or do I/O inline.
   */
  notify(event: WireEvent): void;
}

/**
 * What pi may load besides the built-in tools. Operator paths are trusted (they come from the
 * deployment, not from tenants); project files are tenant data.
 */
export interface ResourcePolicy {
  /** Absolute paths of operator extensions (a .ts/.js file, or a pi package dir). */
  extensionPaths?: readonly string[];
  /** Absolute paths of operator skills (a SKILL.md / .md file, or a dir of them). */
  skillPaths?: readonly string[];
  /** Absolute paths of operator prompt templates (a .md file, or a dir of them). */
  promptPaths?: readonly string[];
  /** No extensions at all (operator and project). */
  noExtensions?: boolean;
  /** No skills at all (operator, those of operator extension packages, and project `.pi/skills`). */
  noSkills?: boolean;
  /** No prompt templates at all (operator paths, operator extension packages' own, project `.pi/prompts`). */
  noPromptTemplates?: boolean;
  /**
   * Load the project's `.pi/extensions` (tenant code, run in the worker process). Default false:
   * only for orgs the operator marked trusted. Project skills and prompt templates are text and
   * load regardless (unless switched off above).
   */
  trustProjectExtensions?: boolean;
}

/** What openSession needs to open (or create) one agent session. */
export interface SessionSpec extends ResourcePolicy {
  runtime: OrgRuntime;
  /** Absolute; the agent's cwd. */
  projectDir: string;
  /**
   * Absolute path of the session JSONL (created on first flush if missing; reopened otherwise).
   * In the fleet's layout it is named `<fleet session id>.jsonl` (WorkspacePaths.sessionFile).
   */
  sessionFile: string;
  /**
   * The fleet session id: what the API names this session by and what commands answer as
   * `sessionId` (get_state, get_session_stats, the header of export_html). pi's own header id
   * never leaves this package. Default: the name of `sessionFile` without `.jsonl`.
   */
  sessionId?: string;
  /** A worker-private empty dir (pi only consults it for defaults this package never uses). */
  agentDir: string;
  /**
   * Explicit model. If absent: the session's last model if it is available in this runtime, else
   * the first available model of the runtime (custom providers first); if none, openSession
   * throws PiRuntimeError "no_model".
   */
  model?: { provider: string; modelId: string };
  /** If absent: the level stored in the session file, else pi's default ("medium"), clamped to the model. */
  thinkingLevel?: ThinkingLevel;
  /** Extra env for the bash tool on top of the minimal env (may override its entries). */
  bashEnv?: Record<string, string>;
  /** Per-command cap for the bash tool in milliseconds; default 10 minutes. */
  bashTimeoutMs?: number;
  /** Extension UI of the session (dialogs, notifications, extension errors); absent: no UI. */
  ui?: ExtensionUiHost;
}

export type RunOutcomeStatus = "finished" | "failed" | "aborted";

/** How one `PiSession.run` ended. */
export interface RunOutcome {
  status: RunOutcomeStatus;
  /** Human-readable reason for "failed" (pi's errorMessage or the preflight error, first line). */
  error?: string;
  /** Summed over the run's assistant messages (pi-ai `Usage`; cost in USD). */
  usage: RunUsage;
  /** pi's stopReason of the run's last assistant message, if there was one. */
  stopReason?: string;
}

/** An image attached to a prompt (base64 data, e.g. mimeType "image/png"). */
export interface PromptImage {
  data: string;
  mimeType: string;
}

/** Current model and thinking state of a session. */
export interface SessionSettings {
  model: ModelRow | null;
  thinkingLevel: ThinkingLevel;
  availableThinkingLevels: ThinkingLevel[];
  supportsThinking: boolean;
  isStreaming: boolean;
}

/** A new fleet session reserved by {@link SessionFiles.allocate}. */
export interface SessionSlot {
  /** The fleet session id (what the API names the session by). */
  sessionId: string;
  /** Absolute path the session's pi file must be written to; it does not exist yet, its directory does. */
  sessionFile: string;
}

/** What a fork, clone or new_session wrote, handed to {@link SessionFiles.register}. */
export interface CreatedSession {
  /** The command that created the session. */
  origin: "fork" | "clone" | "new_session";
  /**
   * Fleet id of the parent recorded in the pi header: for fork and clone always the session the
   * command ran on; for new_session its `parentSession` argument, absent when none was given.
   */
  parentSessionId?: string;
  /** pi's session name (latest `session_info` entry) carried over on the copied branch, if any. */
  piSessionName?: string;
  /**
   * The new file's messages in file order as get_messages shows them (no `system` messages, no
   * `fullOutputPath`): the seed of the session's persisted history. Empty for an empty session.
   */
  messages: unknown[];
  /** Text of the first user message (at most 200 characters); absent when there is none. */
  firstMessage?: string;
}

/**
 * The fleet's side of fork, clone and new_session (in the style of pi's `*Operations` hooks):
 * the adapter writes the pi file, the fleet owns ids, paths and the registry. Implemented by the
 * worker that holds the project lease (single writer of the project's session files).
 */
export interface SessionFiles {
  /**
   * The pi file of a fleet session of the same project, or undefined when the project has no
   * such session (or `sessionId` is not a valid id). Never takes or resolves a path.
   */
  sessionFile(sessionId: string): Promise<string | undefined>;
  /**
   * Reserves a new session: a fresh fleet id and its file path (directory created). Rejects when
   * this process may not write the project's files (lease lost); nothing is registered yet.
   */
  allocate(): Promise<SessionSlot>;
  /**
   * Makes the written session visible: its registry record (listed by `GET …/sessions`, with the
   * messages as its persisted history) and the `session_created` activity event. On rejection
   * the command removes the file and fails with the error; the session must then not be listed.
   */
  register(slot: SessionSlot, created: CreatedSession): Promise<void>;
}

/** A pi RPC-style command: `type` plus the command's own fields (pi's RpcCommand shapes). */
export interface CommandRequest {
  type: string;
  [key: string]: unknown;
}

/**
 * Why a command was refused without running: `busy` (it needs an idle session), `invalid`
 * (missing or malformed arguments, an unknown model or entry id), `unsupported` (unknown type, or
 * a pi command the fleet does not offer here). Failures reported by pi itself carry no code.
 */
export type CommandErrorCode = "busy" | "invalid" | "unsupported";

/** A command's answer: pi's RPC response minus `id`/`type`/`command` (see PiSession.command). */
export type CommandResult =
  | { success: true; data?: unknown }
  | { success: false; error: string; code?: CommandErrorCode };

/** One open pi agent session (single writer of its session file). */
export interface PiSession {
  /**
   * The fleet session id (SessionSpec.sessionId): the `sessionId` every command answer names this
   * session by.
   */
  readonly sessionId: string;
  /** pi's session header id (a UUIDv7); internal, never in a command answer. */
  readonly piSessionId: string;
  readonly isStreaming: boolean;
  /**
   * Runs one prompt to completion (pi's prompt() resolves after the whole run incl. tools and
   * retries). Every pi event of the run is converted with toWireEvent and handed to `sink`
   * synchronously (the sink must not throw or do I/O; exceptions are swallowed). Never rejects:
   * preflight errors (no auth, busy) become `{status: "failed", error}`. If abort() was called
   * during the run, the status is "aborted" whatever pi's stopReason says. Events pi emits
   * outside a run (e.g. thinking_level_changed from setThinkingLevel) are not delivered.
   */
  run(text: string, opts: { images?: PromptImage[] }, sink: (event: WireEvent) => void): Promise<RunOutcome>;
  /**
   * Queues a steering message into the active run (pi `steer`): delivered after the current
   * assistant turn's tool calls finish, before the next LLM request. pi emits `queue_update` into
   * the run's sink. Also accepted while run() is still in pi's preflight (then delivered with
   * the prompt; dropped if the preflight fails). Throws PiRuntimeError "idle" when no run is
   * active, or when the run ended before pi queued the message (the caller starts a new run
   * instead); Error when disposed.
   */
  steer(text: string, images?: PromptImage[]): Promise<void>;
  /**
   * Queues a follow-up message (pi `followUp`): delivered when the agent would otherwise stop,
   * within the same run. Same activity rule and errors as steer().
   */
  followUp(text: string, images?: PromptImage[]): Promise<void>;
  /**
   * Runs one pi RPC command with pi's semantics, error texts and response `data` shapes, minus
   * server paths: get_state, get_messages, get_available_models, set_model, cycle_model,
   * set_thinking_level, cycle_thinking_level, get_available_thinking_levels, set_steering_mode,
   * set_follow_up_mode, compact, set_auto_compaction, set_auto_retry, abort_retry, clear_queue,
   * bash, abort_bash, get_session_stats, get_last_assistant_text, set_session_name,
   * get_commands, get_fork_messages, get_entries, get_tree, export_html, fork, clone,
   * new_session (each handler in commands/*.ts documents its `data`). Session ids in answers are
   * fleet ids (this session's is `sessionId`), never pi's header id. Events pi emits outside a
   * run (compaction, user bash output) are not delivered to any sink.
   * fork, clone and new_session create a NEW fleet session through `files` (this session is left
   * unchanged; the answer carries the new `sessionId`); without `files` they are "unsupported".
   * switch_session is always "unsupported" (a request names its session in the URL).
   * Never rejects: pi's errors become `{success: false, error}` (first line only), a disposed
   * session answers `{success: false, error: "PiSession is disposed"}`. compact, set_model,
   * cycle_model, fork, clone, new_session and export_html answer "busy" during a run. Settings
   * commands change this session only. Unknown types answer `Unknown command: <type>`
   * ("unsupported"); prompt, steer, follow_up and abort are "unsupported" here (use
   * run/steer/followUp/abort).
   */
  command(request: CommandRequest, files?: SessionFiles): Promise<CommandResult>;
  /**
   * Stops the commands running on this session now (an operator disabled the org), without
   * waiting for them to end; each command() then answers as pi reports the cancellation:
   * - `bash` (pi's abortBash: the command's process group gets SIGKILL) →
   *   `{success: true, data: {output, cancelled: true, truncated}}` without `exitCode`, recorded
   *   in the session as a cancelled bashExecution message, like `abort_bash`;
   * - `compact` (pi's abortCompaction, which would also cancel an automatic compaction under way)
   *   → `{success: false, error: "Compaction cancelled"}`; a compact whose compaction pi has not
   *   started yet is cancelled as it starts.
   * These are the long-running commands pi can abort; the others are short and have no abort.
   * A run is left alone (abort() stops it), and so are commands started after this call. Never
   * throws. @returns how many bash and compact commands were running
   */
  abortCommands(): number;
  /** Aborts the current run (bash process group included) and waits until pi persisted the partial turn. */
  abort(): Promise<void>;
  settings(): SessionSettings;
  /** Switches the model (session-only). Throws PiRuntimeError "unknown_model", "busy" or "auth". */
  setModel(provider: string, modelId: string): Promise<void>;
  /** Sets the thinking level; returns the effective (clamped to the model) level. */
  setThinkingLevel(level: ThinkingLevel): ThinkingLevel;
  /**
   * pi's AgentMessage[] of the current context, excluding role "system" messages (they embed
   * server paths) and without `fullOutputPath` on user-bash (`bashExecution`) messages.
   */
  messages(): unknown[];
  /** Aborts first if streaming, then disposes the pi session and removes the bash temp dir. Idempotent. */
  dispose(): Promise<void>;
}
