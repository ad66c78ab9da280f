// Turns a chat-completions request into a scripted reply plan for the fake LLM. Kept apart from
// the HTTP server so the directive grammar (see fake-llm.ts header / README) is pure and testable.
//
// Grammar: directives are `[[name]]` or `[[name:arg]]` anywhere in the text of the LAST
// `role: "user"` message; `arg` runs up to the first `]]` (so it may contain single `]`).
// Precedence when several decide the reply: fail > bash > deltas > reply > default echo.
// `delay` combines with all of them; `tag` and unknown names are ignored.

/** One part of an array-form message `content` (only `type: "text"` parts are read). */
export interface ChatContentPart {
  type: string;
  text?: string;
  [key: string]: unknown;
}

/** One message of an OpenAI chat-completions request; `content` may be a string or parts. */
export interface ChatMessage {
  role: string;
  content?: string | ChatContentPart[] | null;
  tool_call_id?: string;
  tool_calls?: unknown[];
  [key: string]: unknown;
}

/** The parsed JSON body of `POST /v1/chat/completions` (unknown extra fields are kept). */
export interface ChatRequestBody {
  model?: string;
  messages?: ChatMessage[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  tools?: unknown[];
  [key: string]: unknown;
}

/** A single `[[name:arg]]` directive found in the prompt (`arg` is "" when absent). */
export interface Directive {
  name: string;
  arg: string;
}

/** A tool call the fake model emits: `arguments` is the full JSON string. */
export interface PlannedToolCall {
  id: string;
  name: string;
  arguments: string;
}

/**
 * What the fake model answers. `fail`: an HTTP error status. `reply`: assistant text (already
 * split into the content deltas to stream), an optional tool call, and the finish reason.
 * `delayMs` is waited before every streamed chunk (once for non-streaming/failed answers).
 */
export type ReplyPlan =
  | { kind: "fail"; status: number; delayMs: number }
  | {
      kind: "reply";
      delayMs: number;
      contentPieces: string[];
      toolCall?: PlannedToolCall;
      finishReason: "stop" | "tool_calls";
    };

const DIRECTIVE_RE = /\[\[([A-Za-z_][\w-]*)(?::([\s\S]*?))?\]\]/g;

/** Finds every `[[name]]` / `[[name:arg]]` directive in `text`, in order of appearance. */
export function parseDirectives(text: string): Directive[] {
  const out: Directive[] = [];
  for (const m of text.matchAll(DIRECTIVE_RE)) {
    out.push({ name: (m[1] ?? "").toLowerCase(), arg: m[2] ?? "" });
  }
  return out;
}

/** Concatenates the text of a message `content` (string, or the `text` of its text parts). */
export function messageText(content: ChatMessage["content"]): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .filter((p) => p.type === "text" && typeof p.text === "string")
    .map((p) => p.text)
    .join("\n");
}

/** The text of the last `role: "user"` message of the request, or "" if there is none. */
export function lastUserText(body: ChatRequestBody): string {
  const messages = body.messages ?? [];
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m?.role === "user") return messageText(m.content);
  }
  return "";
}

/** Splits `text` into at most `parts` contiguous, non-empty pieces whose concatenation is `text`. */
export function splitPieces(text: string, parts = 4): string[] {
  if (text.length === 0) return [];
  const size = Math.max(1, Math.ceil(text.length / parts));
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

function nonNegativeInt(arg: string, fallback: number): number {
  const n = Number.parseInt(arg, 10);
  return Number.isFinite(n) && n >= 0 ? n : fallback;
}

/**
 * Decides the fake model's answer to `body` from the directives in its last user message.
 * `toolCallId` names the emitted tool call (the server passes a unique id per request).
 */
export function planReply(body: ChatRequestBody, toolCallId: string): ReplyPlan {
  const userText = lastUserText(body);
  const directives = parseDirectives(userText);
  const find = (name: string): Directive | undefined => directives.find((d) => d.name === name);
  const delay = find("delay");
  const delayMs = delay ? nonNegativeInt(delay.arg, 0) : 0;

  const fail = find("fail");
  if (fail) {
    const status = nonNegativeInt(fail.arg, 500);
    return { kind: "fail", status: status >= 400 && status <= 599 ? status : 500, delayMs };
  }

  const bash = find("bash");
  if (bash) {
    const messages = body.messages ?? [];
    const last = messages[messages.length - 1];
    if (last?.role === "tool") {
      const text = `tool said: ${messageText(last.content).trim()}`;
      return { kind: "reply", delayMs, contentPieces: splitPieces(text), finishReason: "stop" };
    }
    return {
      kind: "reply",
      delayMs,
      contentPieces: ["running"],
      toolCall: { id: toolCallId, name: "bash", arguments: JSON.stringify({ command: bash.arg }) },
      finishReason: "tool_calls",
    };
  }

  const deltas = find("deltas");
  if (deltas) {
    const n = nonNegativeInt(deltas.arg, 0);
    const pieces = Array.from({ length: n }, (_, i) => `d${i} `);
    return { kind: "reply", delayMs, contentPieces: pieces, finishReason: "stop" };
  }

  const reply = find("reply");
  if (reply) {
    return { kind: "reply", delayMs, contentPieces: splitPieces(reply.arg), finishReason: "stop" };
  }

  const echo = `ok: ${userText.trim().slice(0, 80)}`;
  return { kind: "reply", delayMs, contentPieces: splitPieces(echo), finishReason: "stop" };
}
