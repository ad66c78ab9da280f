// Wraps one pi AgentSession behind the fleet's PiSession: one run at a time, events converted to
// the lean wire form inside a listener that can never throw (hazard H11), outcomes classified
// with the fleet's own abort flag (H15), and abort-before-dispose so the partial turn is kept (H14).
// Steering input and RPC-style commands are delegated (queued-input rules here, commands/); the
// commands pi can stop (user bash, compact) are counted here so abortCommands() can stop them.
import { rm } from "node:fs/promises";
import type { AgentSession, BashOperations, ModelRuntime } from "@earendil-works/pi-coding-agent";
import { THINKING_LEVELS, type ThinkingLevel, type WireEvent } from "@pi-fleet/contracts";
import { runCommand } from "./commands/index.ts";
import { errorMessage, firstLine, PiRuntimeError } from "./errors.ts";
import type { OverflowLogs } from "./overflow-logs.ts";
import { RunTracker } from "./run-tracker.ts";
import { publicMessages } from "./sanitize.ts";
import { expandSkillCommand } from "./skill-command.ts";
import { fromPiThinkingLevel, fromPiThinkingLevels } from "./thinking-levels.ts";
import type {
  CommandRequest,
  CommandResult,
  OrgRuntime,
  PiSession,
  PromptImage,
  RunOutcome,
  SessionFiles,
  SessionSettings,
} from "./types.ts";
import { toWireEvent } from "./wire-event.ts";

/** Command types abortCommands() stops (the only long-running ones pi has an abort for). */
const ABORTABLE_COMMANDS = new Set(["bash", "compact"]);
/** pi's text for a cancelled compaction, the answer of every compact abortCommands() stopped. */
const COMPACTION_CANCELLED = "Compaction cancelled";

/** A bash or compact command running through command(). */
interface AbortableCommand {
  readonly type: string;
  /** abortCommands() stopped it. */
  cancelled: boolean;
}

interface ActiveRun {
  readonly tracker: RunTracker;
  readonly sink: (event: WireEvent) => void;
  /** pi's run loop began (agent_start seen); before that, run() is still in pi's preflight. */
  started: boolean;
}

/** The parts openSession built a PiAgentSession from. */
export interface PiAgentSessionParts {
  /** pi's session, created with this package's isolated parts (its own in-memory settings). */
  session: AgentSession;
  /** The fleet session id commands answer with (never pi's header id; SessionSpec.sessionId). */
  sessionId: string;
  /** The org runtime the session's models come from. */
  runtime: OrgRuntime;
  /** The pi runtime behind `runtime`. */
  rt: ModelRuntime;
  /** The confined spawner user bash commands run through (the bash tool's, as its own instance). */
  bashOperations: BashOperations;
  /** The bash TMPDIR of this session, removed on dispose. */
  tmpDir: string;
  /** The session's bash overflow logs (overflow-logs.ts), deleted on dispose. */
  overflowLogs: OverflowLogs;
  /** Real paths the session's skills were loaded from (`/skill:` reads stay inside them). */
  skillRoots: readonly string[];
  /**
   * Where pi's events outside a run go (a command's `session_info_changed`,
   * `thinking_level_changed`, a manual compaction, a user `bash`), converted like run events;
   * called synchronously from pi's event queue, must not throw or block. None: dropped.
   */
  outOfRun?: (event: WireEvent) => void;
}

/** The PiSession implementation over a created AgentSession (built by openSession). */
export class PiAgentSession implements PiSession {
  readonly #session: AgentSession;
  readonly #sessionId: string;
  readonly #runtime: OrgRuntime;
  readonly #rt: ModelRuntime;
  readonly #bashOperations: BashOperations;
  readonly #tmpDir: string;
  readonly #overflowLogs: OverflowLogs;
  readonly #skillRoots: readonly string[];
  readonly #outOfRun: ((event: WireEvent) => void) | undefined;
  readonly #unsubscribe: () => void;
  #run: ActiveRun | undefined;
  #disposed = false;
  /** The bash and compact commands running now (see ABORTABLE_COMMANDS). */
  readonly #commands = new Set<AbortableCommand>();

  constructor(parts: PiAgentSessionParts) {
    this.#session = parts.session;
    this.#sessionId = parts.sessionId;
    this.#runtime = parts.runtime;
    this.#rt = parts.rt;
    this.#bashOperations = parts.bashOperations;
    this.#tmpDir = parts.tmpDir;
    this.#overflowLogs = parts.overflowLogs;
    this.#skillRoots = parts.skillRoots;
    this.#outOfRun = parts.outOfRun;
    this.#unsubscribe = this.#session.subscribe((event) => {
      // Runs synchronously inside pi's event queue: no I/O, and nothing may escape (H11).
      if (event.type === "compaction_start" && event.reason === "manual" && this.#compactCancelled()) {
        // A compact abortCommands() met before pi created its controller (just before this event).
        try {
          this.#session.abortCompaction();
        } catch {
          // as below: pi must never see the exception
        }
      }
      const run = this.#run;
      if (!run) {
        try {
          this.#outOfRun?.(toWireEvent(event));
        } catch {
          // as for the run sink: pi must never see the exception
        }
        return;
      }
      if (event.type === "agent_start") {
        run.started = true;
        // Aborted during pi's preflight (input handlers, before_agent_start, image resizing, a
        // compaction): pi's abort() was a no-op then, as no agent was running, and pi clears its
        // abort flag when the agent starts. Abort the agent now that there is one.
        if (run.tracker.abortRequested) void this.#session.abort().catch(() => undefined);
      }
      try {
        run.tracker.observe(event);
      } catch {
        // defensive: the tracker only reads plain fields
      }
      try {
        run.sink(toWireEvent(event));
      } catch {
        // A failing sink loses this event only; pi must never see the exception.
      }
    });
  }

  get sessionId(): string {
    return this.#sessionId;
  }

  get piSessionId(): string {
    return this.#session.sessionId;
  }

  get isStreaming(): boolean {
    return this.#session.isStreaming;
  }

  async run(
    text: string,
    opts: { images?: PromptImage[] },
    sink: (event: WireEvent) => void,
  ): Promise<RunOutcome> {
    const tracker = new RunTracker();
    if (this.#disposed) {
      tracker.markThrown("session is disposed");
      return tracker.outcome();
    }
    if (this.#run || this.#session.isStreaming) {
      tracker.markThrown("busy: the session is already running a prompt");
      return tracker.outcome();
    }
    const run: ActiveRun = { tracker, sink, started: false };
    this.#run = run;
    try {
      const images = toImageContent(opts?.images);
      const input = await this.#expandSkill(text);
      // Aborted while the skill was read: pi would run the prompt anyway (see abort()).
      if (tracker.abortRequested) return tracker.outcome();
      await this.#session.prompt(input, {
        expandPromptTemplates: invokesPromptTemplate(this.#session, input),
        ...(images ? { images } : {}),
      });
    } catch (err) {
      // Preflight failures ("No API key found for x.\n\nUse /login … <server paths>"): first line only.
      tracker.markThrown(firstLine(errorMessage(err)));
      // Input queued during the failed preflight would otherwise ride along with the next prompt.
      if (!run.started && !this.#session.isStreaming) this.#session.clearQueue();
    } finally {
      this.#run = undefined;
    }
    return tracker.outcome();
  }

  steer(text: string, images?: PromptImage[]): Promise<void> {
    return this.#queueInput("steer", text, images);
  }

  followUp(text: string, images?: PromptImage[]): Promise<void> {
    return this.#queueInput("followUp", text, images);
  }

  async command(request: CommandRequest, files?: SessionFiles): Promise<CommandResult> {
    if (this.#disposed) return { success: false, error: "PiSession is disposed" };
    const type: unknown = typeof request === "object" && request !== null ? request.type : undefined;
    const entry: AbortableCommand | undefined =
      typeof type === "string" && ABORTABLE_COMMANDS.has(type) ? { type, cancelled: false } : undefined;
    if (entry) this.#commands.add(entry);
    try {
      const result = await runCommand(
        {
          session: this.#session,
          sessionId: this.#sessionId,
          runtime: this.#runtime,
          rt: this.#rt,
          bashOperations: this.#bashOperations,
          overflowLogs: this.#overflowLogs,
          busy: this.#run !== undefined || this.#session.isStreaming,
          ...(files ? { files } : {}),
        },
        request,
      );
      // Where the abort hit decides pi's text ("This operation was aborted", "Turn prefix
      // summarization failed: …"): one answer for every compact stopped here.
      if (entry?.cancelled && entry.type === "compact" && !result.success && result.code === undefined) {
        return { success: false, error: COMPACTION_CANCELLED };
      }
      return result;
    } finally {
      if (entry) this.#commands.delete(entry);
    }
  }

  abortCommands(): number {
    const running = [...this.#commands];
    for (const c of running) c.cancelled = true;
    try {
      // pi registers a user command's abort controller as executeBash starts, which command()
      // reaches synchronously: every bash command counted here is reached.
      if (running.some((c) => c.type === "bash")) this.#session.abortBash();
      // pi's compact() awaits abort() before it creates its controller: one not created yet is
      // stopped by the listener at compaction_start.
      if (running.some((c) => c.type === "compact")) this.#session.abortCompaction();
    } catch {
      // An abort listener that throws must not stop the caller (the commands still end).
    }
    return running.length;
  }

  /** A compact command abortCommands() stopped is still running. */
  #compactCancelled(): boolean {
    for (const c of this.#commands) if (c.type === "compact" && c.cancelled) return true;
    return false;
  }

  /**
   * Aborts the running run. Before pi's agent has started (the fleet's `/skill:` read, pi's
   * preflight) pi's own abort does nothing; the run is then stopped before pi prompts, or as soon
   * as its agent starts (see run()).
   */
  async abort(): Promise<void> {
    this.#run?.tracker.markAborted();
    await this.#session.abort();
  }

  settings(): SessionSettings {
    const model = this.#session.model;
    return {
      model: model ? (this.#runtime.findModel(model.provider, model.id) ?? null) : null,
      thinkingLevel: fromPiThinkingLevel(this.#session.thinkingLevel),
      availableThinkingLevels: fromPiThinkingLevels(this.#session.getAvailableThinkingLevels()),
      supportsThinking: this.#session.supportsThinking(),
      isStreaming: this.#session.isStreaming,
    };
  }

  async setModel(provider: string, modelId: string): Promise<void> {
    this.#assertOpen();
    if (this.#run || this.#session.isStreaming) {
      throw new PiRuntimeError("busy", "Cannot change the model while a run is active");
    }
    const model = this.#rt.getModel(provider, modelId);
    if (!model) throw new PiRuntimeError("unknown_model", `Unknown model ${provider}/${modelId}`);
    try {
      await this.#session.setModel(model);
    } catch (err) {
      throw new PiRuntimeError("auth", firstLine(errorMessage(err)), { cause: err });
    }
  }

  setThinkingLevel(level: ThinkingLevel): ThinkingLevel {
    this.#assertOpen();
    if (!(THINKING_LEVELS as readonly string[]).includes(level)) {
      throw new TypeError(`Unknown thinking level ${JSON.stringify(level)}`);
    }
    this.#session.setThinkingLevel(level);
    return fromPiThinkingLevel(this.#session.thinkingLevel);
  }

  messages(): unknown[] {
    return publicMessages(this.#session.messages);
  }

  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    try {
      if (this.#session.isStreaming) await this.abort();
    } finally {
      this.#unsubscribe();
      this.#session.dispose();
      // Logs first: an adoption under way may still be moving a log into the temp dir.
      await this.#overflowLogs.dispose();
      await rm(this.#tmpDir, { recursive: true, force: true }).catch(() => {});
    }
  }

  /** `/skill:name args` expanded as pi's RPC mode does, with the file read confined (skill-command.ts). */
  #expandSkill(text: string): Promise<string> {
    return expandSkillCommand(
      this.#session.resourceLoader.getSkills().skills,
      this.#skillRoots,
      text,
      this.#session.sessionManager.getCwd(),
    );
  }

  #assertOpen(): void {
    if (this.#disposed) throw new Error("PiSession is disposed");
  }

  /** True while pi streams a run, or while run() is still in pi's preflight (queued input rides along). */
  #acceptsQueuedInput(): boolean {
    return this.#session.isStreaming || (this.#run !== undefined && !this.#run.started);
  }

  async #queueInput(
    kind: "steer" | "followUp",
    text: string,
    images: PromptImage[] | undefined,
  ): Promise<void> {
    this.#assertOpen();
    if (typeof text !== "string") throw new TypeError(`${kind} text must be a string`);
    if (!this.#acceptsQueuedInput()) {
      throw new PiRuntimeError(
        "idle",
        `Cannot ${kind === "steer" ? "steer" : "follow up"}: no run is active`,
      );
    }
    const content = toImageContent(images);
    // Expanded here, confined: pi's own expansion in steer/followUp would read the file unconfined.
    const input = await this.#expandSkill(text);
    if (kind === "steer") await this.#session.steer(input, content, { source: "rpc" });
    else await this.#session.followUp(input, content, { source: "rpc" });
    // pi queues after awaiting its input handlers: if the run ended meanwhile, nothing would
    // deliver the message until the next prompt, so take it back and report the session idle.
    if (!this.#acceptsQueuedInput() && this.#session.pendingMessageCount > 0) {
      this.#session.clearQueue();
      throw new PiRuntimeError("idle", "The run ended before the message was queued");
    }
  }
}

/**
 * Whether `text` calls one of the session's prompt templates (`/name args`: operator
 * PI_PROMPT_PATHS and project `.pi/prompts`, loaded as text), which pi's RPC mode expands. Only
 * then does prompt() get pi's `expandPromptTemplates`, because that switch also (a) runs extension
 * commands, whose work would fall outside the fleet's run (its events after prompt() returns are
 * not streamed; such text reaches the model verbatim instead), and (b) expands `/skill:name` by
 * reading the skill file unconfined: skills are expanded before, by expandSkillCommand, and a
 * `/skill:` text left over (an unknown skill) never gets the switch. pi's own matching: name = the
 * text up to the first blank.
 */
function invokesPromptTemplate(session: AgentSession, text: string): boolean {
  const name = /^\/(\S+)/.exec(text)?.[1];
  if (!name || name.startsWith("skill:")) return false;
  if (session.extensionRunner.getCommand(name)) return false;
  return session.promptTemplates.some((t) => t.name === name);
}

/** pi's image content blocks for PromptImages; undefined for none. */
function toImageContent(
  images: readonly PromptImage[] | undefined,
): { type: "image"; data: string; mimeType: string }[] | undefined {
  if (!images?.length) return undefined;
  return images.map((i) => ({ type: "image" as const, data: i.data, mimeType: i.mimeType }));
}
