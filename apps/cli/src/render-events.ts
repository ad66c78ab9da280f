/**
 * Wire events → terminal text, as a pure function of the events seen so far (no I/O, no clock):
 * the assistant's text deltas go to stdout as they arrive; everything else (tool activity,
 * thinking, run outcome, dialogs, retries) goes to stderr as whole, toned lines, so
 * `pifleet prompt … --follow > answer.md` captures only the answer. Both streams usually share
 * one terminal, so the renderer tracks where the cursor is and ends a half-written line before
 * starting another one on the other stream.
 */
import type { WireEvent } from "@pi-fleet/client";

/** How a chunk is styled (applied only when the stream is a colour terminal). */
export type Tone = "dim" | "bold" | "red" | "green" | "yellow" | "cyan";

/** A piece of output: text for one stream, with an optional tone. */
export interface Chunk {
  stream: "stdout" | "stderr";
  text: string;
  tone?: Tone;
}

/** What to show besides the assistant's text and the tool and run lines. */
export interface RenderOptions {
  /** User messages as `> text` lines (tail: yes; prompt: no, the user just typed it). */
  showUser?: boolean;
  /** `run_queued` / `run_started` lines (tail). */
  showRuns?: boolean;
  /** The model's thinking deltas, dimmed on stderr; default true. */
  showThinking?: boolean;
  /** Project and session of the stream, for the `pifleet answer …` hint under dialogs. */
  projectId?: string;
  sessionId?: string;
}

/** How a run ended. */
export type RunOutcome = "finished" | "failed" | "aborted" | "interrupted" | "cancelled";

const OUTCOMES: Record<string, RunOutcome> = {
  run_finished: "finished",
  run_failed: "failed",
  run_aborted: "aborted",
  run_interrupted: "interrupted",
  run_cancelled: "cancelled",
};

/** The outcome a run's status (`GET …/runs/{runId}`) names when it has ended, else undefined. */
export function outcomeOfStatus(status: string): RunOutcome | undefined {
  return (Object.values(OUTCOMES) as string[]).includes(status) ? (status as RunOutcome) : undefined;
}

/** The outcome a terminal run event reports, or undefined for any other event. */
export function runOutcome(event: WireEvent): RunOutcome | undefined {
  return OUTCOMES[event.type];
}

const DIALOGS = new Set(["select", "confirm", "input", "editor"]);

/** True for an `extension_ui_request` that waits for an answer (select, confirm, input, editor). */
export function isDialog(event: WireEvent): boolean {
  return event.type === "extension_ui_request" && DIALOGS.has(String(event.method));
}

/** `text` on one line (newlines shown as ⏎) and at most `max` characters (… when cut). */
export function oneLine(text: string, max = 80): string {
  const flat = text
    .trim()
    .replace(/\s*\r?\n\s*/g, " ⏎ ")
    .replace(/\s+/g, " ");
  return flat.length > max ? `${flat.slice(0, Math.max(1, max - 1))}…` : flat;
}

/** The argument fields worth showing for pi's built-in tools, in order. */
const TOOL_FIELDS: Record<string, readonly string[]> = {
  bash: ["command"],
  read: ["path"],
  write: ["path"],
  edit: ["path"],
  ls: ["path"],
  grep: ["pattern", "path"],
  find: ["pattern", "path"],
};

/**
 * A short, one-line summary of a tool call's arguments: the command for `bash`, the path for the
 * file tools, `key=value` pairs of the string/number fields for other tools.
 */
export function summarizeArgs(toolName: string, args: unknown, max = 80): string {
  if (typeof args === "string") return oneLine(args, max);
  if (typeof args !== "object" || args === null) return args === undefined ? "" : oneLine(String(args), max);
  const record = args as Record<string, unknown>;
  const fields = TOOL_FIELDS[toolName];
  if (fields) {
    const values = fields.map((f) => record[f]).filter((v) => typeof v === "string" || typeof v === "number");
    if (values.length > 0) return oneLine(values.join(" "), max);
  }
  const pairs = Object.entries(record)
    .filter(([, v]) => typeof v === "string" || typeof v === "number" || typeof v === "boolean")
    .map(([k, v]) => `${k}=${String(v)}`);
  if (pairs.length > 0) return oneLine(pairs.join(" "), max);
  const json = JSON.stringify(args);
  return json === "{}" ? "" : oneLine(json, max);
}

/** The text of a tool result (`{content: [{type: "text", text}]}` in pi), or of any other shape. */
export function resultText(result: unknown): string {
  if (typeof result === "string") return result;
  if (typeof result !== "object" || result === null) return "";
  const content = (result as { content?: unknown }).content;
  if (Array.isArray(content)) {
    return content
      .map((part) =>
        typeof part === "object" && part !== null && (part as { type?: unknown }).type === "text"
          ? String((part as { text?: unknown }).text ?? "")
          : "",
      )
      .join("\n");
  }
  return "";
}

function firstLine(text: string, max: number): string {
  const line = text.split(/\r?\n/).find((l) => l.trim() !== "") ?? "";
  return oneLine(line, max);
}

/** The text of a user message's content (a string or pi content parts). */
function messageText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .map((part) => {
      if (typeof part !== "object" || part === null) return "";
      const p = part as { type?: unknown; text?: unknown };
      if (p.type === "text") return String(p.text ?? "");
      if (p.type === "image") return "[image]";
      return "";
    })
    .filter((t) => t !== "")
    .join(" ");
}

interface Usage {
  totalTokens?: unknown;
  cost?: unknown;
}

/** `1,234 tokens · $0.0012` (cost omitted when zero or unknown). */
export function formatUsage(usage: unknown): string {
  if (typeof usage !== "object" || usage === null) return "";
  const { totalTokens, cost } = usage as Usage;
  const parts: string[] = [];
  if (typeof totalTokens === "number") parts.push(`${totalTokens.toLocaleString("en-US")} tokens`);
  if (typeof cost === "number" && cost > 0) parts.push(`$${cost < 0.01 ? cost.toFixed(4) : cost.toFixed(2)}`);
  return parts.join(" · ");
}

/**
 * Renders a session stream for a human, one event at a time. Keeps only layout state (where the
 * cursor is, whether thinking is being streamed), so the same events always give the same text.
 */
export class EventRenderer {
  private readonly opts: RenderOptions;
  /** The stream holding a half-written line, or undefined at the start of a line. */
  private openLine: Chunk["stream"] | undefined;

  constructor(opts: RenderOptions = {}) {
    this.opts = opts;
  }

  /** True when the cursor is at the start of a line (a spinner may be shown). */
  get atLineStart(): boolean {
    return this.openLine === undefined;
  }

  /** The chunks to write for `event`, in order (possibly none). */
  render(event: WireEvent): Chunk[] {
    const out: Chunk[] = [];
    this.renderInto(event, out);
    return out;
  }

  /** Ends a half-written line, if any (call before exiting). */
  finish(): Chunk[] {
    const out: Chunk[] = [];
    this.endLine(out);
    return out;
  }

  private endLine(out: Chunk[]): void {
    if (this.openLine !== undefined) {
      out.push({ stream: this.openLine, text: "\n" });
      this.openLine = undefined;
    }
  }

  /** A whole line on `stream`. */
  private line(out: Chunk[], stream: Chunk["stream"], text: string, tone?: Tone): void {
    this.endLine(out);
    out.push(tone === undefined ? { stream, text: `${text}\n` } : { stream, text: `${text}\n`, tone });
  }

  /** Text continuing the current line on `stream` (ending another stream's line first). */
  private inline(out: Chunk[], stream: Chunk["stream"], text: string, tone?: Tone): void {
    if (text === "") return;
    if (this.openLine !== undefined && this.openLine !== stream) this.endLine(out);
    out.push(tone === undefined ? { stream, text } : { stream, text, tone });
    this.openLine = text.endsWith("\n") ? undefined : stream;
  }

  private note(out: Chunk[], text: string, tone: Tone = "dim"): void {
    this.line(out, "stderr", text, tone);
  }

  private renderInto(event: WireEvent, out: Chunk[]): void {
    const e = event as Record<string, unknown>;
    switch (event.type) {
      case "message_update": {
        const delta = e.assistantMessageEvent as { type?: unknown; delta?: unknown } | undefined;
        if (typeof delta?.delta !== "string") return;
        if (delta.type === "text_delta") this.inline(out, "stdout", delta.delta);
        else if (delta.type === "thinking_delta" && this.opts.showThinking !== false) {
          this.inline(out, "stderr", delta.delta, "dim");
        }
        return;
      }
      case "message_start": {
        const message = e.message as { role?: unknown; content?: unknown } | undefined;
        if (this.opts.showUser && message?.role === "user") {
          const text = messageText(message.content).trim();
          if (text !== "") this.line(out, "stdout", text.replace(/^/gm, "> "), "bold");
        }
        return;
      }
      case "message_end":
        this.endLine(out);
        return;
      case "tool_execution_start": {
        const name = String(e.toolName ?? "tool");
        const args = summarizeArgs(name, e.args);
        this.note(out, `→ ${name}${args ? `  ${args}` : ""}`);
        return;
      }
      case "tool_execution_end": {
        const name = String(e.toolName ?? "tool");
        const text = firstLine(resultText(e.result), 100);
        if (e.isError === true) this.note(out, `✗ ${name} failed${text ? `: ${text}` : ""}`, "red");
        else this.note(out, `✓ ${name}${text ? `  ${text}` : ""}`);
        return;
      }
      case "auto_retry_start": {
        const seconds = typeof e.delayMs === "number" ? ` in ${(e.delayMs / 1000).toFixed(1)} s` : "";
        const attempt = e.attempt !== undefined ? ` (attempt ${e.attempt}/${e.maxAttempts})` : "";
        this.note(
          out,
          `⟳ provider error, retrying${seconds}${attempt}: ${oneLine(String(e.errorMessage ?? ""), 160)}`,
          "yellow",
        );
        return;
      }
      case "compaction_start":
        this.note(out, `· compacting the context (${String(e.reason ?? "manual")})…`);
        return;
      case "compaction_end":
        if (typeof e.errorMessage === "string")
          this.note(out, `! compaction failed: ${oneLine(e.errorMessage, 160)}`, "yellow");
        else this.note(out, e.aborted === true ? "· compaction aborted" : "· context compacted");
        return;
      case "session_info_changed":
        if (typeof e.name === "string") this.note(out, `· session name: ${e.name}`);
        return;
      case "extension_ui_request":
        this.renderUiRequest(e, out);
        return;
      case "extension_error":
        this.note(
          out,
          `✗ extension error in ${String(e.event ?? "?")} (${String(e.extensionPath ?? "?")}): ${oneLine(String(e.error ?? ""), 200)}`,
          "red",
        );
        return;
      case "run_queued":
        if (this.opts.showRuns) {
          const ahead = typeof e.position === "number" && e.position > 0 ? ` (${e.position} ahead)` : "";
          this.note(out, `· run ${String(e.runId)} queued${ahead}`);
        }
        return;
      case "run_started":
        if (this.opts.showRuns) this.note(out, `· run ${String(e.runId)} started`);
        return;
      case "run_finished": {
        const usage = formatUsage(e.usage);
        this.note(out, `✓ run finished${usage ? ` · ${usage}` : ""}`, "green");
        return;
      }
      case "run_failed":
        this.note(out, `✗ run failed: ${oneLine(String(e.error ?? "unknown error"), 300)}`, "red");
        return;
      case "run_aborted":
        this.note(out, "■ run aborted", "yellow");
        return;
      case "run_interrupted":
        this.note(out, `■ run interrupted (${String(e.reason ?? "unknown")}); it is not retried`, "yellow");
        return;
      case "run_cancelled":
        this.note(out, "■ run cancelled before it started", "yellow");
        return;
      case "stream_reset": {
        const from = typeof e.firstOffset === "string" ? ` before ${e.firstOffset}` : "";
        this.note(out, `! stream reset (${String(e.reason ?? "?")}): events${from} are gone`, "yellow");
        return;
      }
      default:
        return;
    }
  }

  private renderUiRequest(e: Record<string, unknown>, out: Chunk[]): void {
    const method = String(e.method);
    if (method === "notify") {
      const kind = e.notifyType === "warning" || e.notifyType === "error" ? e.notifyType : "info";
      const tone: Tone = kind === "error" ? "red" : kind === "warning" ? "yellow" : "dim";
      this.note(out, `[${kind}] ${oneLine(String(e.message ?? ""), 300)}`, tone);
      return;
    }
    if (!DIALOGS.has(method)) return;
    const title = oneLine(String(e.title ?? ""), 120);
    let detail = "";
    if (method === "select" && Array.isArray(e.options)) detail = ` [${e.options.map(String).join(" | ")}]`;
    if (method === "confirm" && typeof e.message === "string") detail = `: ${oneLine(e.message, 120)}`;
    if (method === "input" || method === "editor") detail = ` (${method})`;
    this.note(out, `? ${title}${detail}`, "yellow");
    const { projectId, sessionId } = this.opts;
    const where = projectId && sessionId ? `pifleet answer ${projectId} ${sessionId}` : "pifleet answer";
    this.note(out, `  waiting for an answer: ${where}  (request ${String(e.id)})`);
  }
}
