// Wraps one pi AgentSession behind the fleet's PiSession: one run at a time, events converted to
// the lean wire form inside a listener that can never throw (hazard H11), outcomes classified
// with the fleet's own abort flag (H15), and abort-before-dispose so the partial turn is kept (H14).
import { rm } from "node:fs/promises";
import type { AgentSession, ModelRuntime } from "@earendil-works/pi-coding-agent";
import { THINKING_LEVELS, type ThinkingLevel, type WireEvent } from "@pi-fleet/contracts";
import { errorMessage, PiRuntimeError } from "./errors.ts";
import { RunTracker } from "./run-tracker.ts";
import { fromPiThinkingLevel, fromPiThinkingLevels } from "./thinking-levels.ts";
import type { OrgRuntime, PiSession, PromptImage, RunOutcome, SessionSettings } from "./types.ts";
import { toWireEvent } from "./wire-event.ts";

interface ActiveRun {
  readonly tracker: RunTracker;
  readonly sink: (event: WireEvent) => void;
}

/** The PiSession implementation over a created AgentSession (built by openSession). */
export class PiAgentSession implements PiSession {
  readonly #session: AgentSession;
  readonly #runtime: OrgRuntime;
  readonly #rt: ModelRuntime;
  readonly #tmpDir: string;
  readonly #unsubscribe: () => void;
  #run: ActiveRun | undefined;
  #disposed = false;

  /**
   * @param session pi's session, created with this package's isolated parts
   * @param runtime the org runtime the session's models come from
   * @param rt the pi runtime behind `runtime`
   * @param tmpDir the bash TMPDIR of this session, removed on dispose
   */
  constructor(session: AgentSession, runtime: OrgRuntime, rt: ModelRuntime, tmpDir: string) {
    this.#session = session;
    this.#runtime = runtime;
    this.#rt = rt;
    this.#tmpDir = tmpDir;
    this.#unsubscribe = session.subscribe((event) => {
      // Runs synchronously inside pi's event queue: no I/O, and nothing may escape (H11).
      const run = this.#run;
      if (!run) return;
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
    this.#run = { tracker, sink };
    try {
      await this.#session.prompt(text, {
        expandPromptTemplates: false,
        ...(opts?.images?.length
          ? {
              images: opts.images.map((i) => ({
                type: "image" as const,
                data: i.data,
                mimeType: i.mimeType,
              })),
            }
          : {}),
      });
    } catch (err) {
      // Preflight failures ("No API key found for x.\n\nUse /login … <server paths>"): first line only.
      tracker.markThrown(firstLine(errorMessage(err)));
    } finally {
      this.#run = undefined;
    }
    return tracker.outcome();
  }

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
    return this.#session.messages.filter((m) => m.role !== "system");
  }

  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    try {
      if (this.#session.isStreaming) await this.abort();
    } finally {
      this.#unsubscribe();
      this.#session.dispose();
      await rm(this.#tmpDir, { recursive: true, force: true }).catch(() => {});
    }
  }

  #assertOpen(): void {
    if (this.#disposed) throw new Error("PiSession is disposed");
  }
}

function firstLine(message: string): string {
  return message.split("\n", 1)[0]?.trim() || message;
}
