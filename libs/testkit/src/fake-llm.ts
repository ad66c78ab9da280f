// A scripted, OpenAI-compatible chat-completions server (plain node:http, loopback) so tests and
// benches can run the pi agent end to end without a real model: the prompt itself says what the
// "model" answers.
//
// Routes: POST /v1/chat/completions and POST /chat/completions (streaming SSE or plain JSON),
// GET /v1/models and GET /models. Anything else is 404; a body that is not JSON is 400.
//
// Directive grammar — written anywhere in the text of the LAST `role: "user"` message, as
// `[[name]]` or `[[name:arg]]` (arg ends at the first `]]`):
//   (none)            reply `ok: <first 80 chars of the trimmed user text>` in a few chunks
//   [[reply:TEXT]]    stream exactly TEXT
//   [[bash:COMMAND]]  last message is the user message -> text "running" + one tool call to
//                     `bash` with arguments {"command": COMMAND}, finish_reason "tool_calls";
//                     last message is a `role: "tool"` message -> text
//                     `tool said: <tool content, trimmed>`, finish_reason "stop"
//   [[deltas:N]]      stream N content deltas "d0 ", "d1 ", ..., "d{N-1} "
//   [[delay:MS]]      wait MS ms before every streamed chunk (combines with everything)
//   [[fail:STATUS]]   answer HTTP STATUS (400..599, else 500) with
//                     {"error":{"message":"fake failure","type":"fake_error"}}
//   [[tag:ANY]]       no effect (makes prompts unique); unknown names are ignored too
// When several decide the reply the precedence is fail > bash > deltas > reply > default.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { type ChatRequestBody, planReply, type ReplyPlan, splitPieces } from "./fake-llm-script.ts";

/** The model id the fake server reports and echoes when a request names none. */
export const FAKE_MODEL_ID = "fake-model";

/** One chat-completions request as received: parsed JSON body, Authorization header, epoch ms. */
export interface RecordedRequest {
  body: ChatRequestBody;
  authorization?: string;
  receivedAt: number;
}

/** Options for {@link startFakeLlm}: `port` 0 (default) picks a free one; `host` defaults to 127.0.0.1. */
export interface FakeLlmOptions {
  port?: number;
  host?: string;
}

/**
 * A running fake LLM. `url` is `http://HOST:PORT`, `baseUrl` is `url + "/v1"` (what an
 * OpenAI-compatible client wants). `requests` records every parsed chat request; `inFlight`
 * counts chat responses not yet finished; `disconnects` counts clients that went away before
 * their response finished (not counting those cut by `close()`). `reset()` clears `requests` and
 * `disconnects`; `close()` aborts in-flight responses, drops keep-alive sockets and stops listening.
 */
export interface FakeLlm {
  readonly url: string;
  readonly baseUrl: string;
  readonly requests: RecordedRequest[];
  readonly inFlight: number;
  readonly disconnects: number;
  close(): Promise<void>;
  reset(): void;
}

const CHAT_PATHS = new Set(["/v1/chat/completions", "/chat/completions"]);
const MODEL_PATHS = new Set(["/v1/models", "/models"]);

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function errorBody(message: string, type: string): unknown {
  return { error: { message, type } };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function estimateTokens(chars: number): number {
  return Math.max(1, Math.ceil(chars / 4));
}

function usageFor(body: ChatRequestBody, plan: Extract<ReplyPlan, { kind: "reply" }>): unknown {
  const prompt_tokens = estimateTokens(JSON.stringify(body.messages ?? []).length);
  const outChars = plan.contentPieces.join("").length + (plan.toolCall?.arguments.length ?? 0);
  const completion_tokens = estimateTokens(outChars);
  return { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens };
}

/**
 * Starts the fake LLM on `host:port` (default 127.0.0.1:0). Resolves once listening; rejects
 * with the listen error (e.g. EADDRINUSE) otherwise. See the file header for the directive grammar.
 */
export async function startFakeLlm(opts: FakeLlmOptions = {}): Promise<FakeLlm> {
  const host = opts.host ?? "127.0.0.1";
  const requests: RecordedRequest[] = [];
  const active = new Set<AbortController>();
  let inFlight = 0;
  let disconnects = 0;
  let seq = 0;
  let closing = false;

  async function streamReply(
    res: ServerResponse,
    body: ChatRequestBody,
    plan: Extract<ReplyPlan, { kind: "reply" }>,
    id: string,
    signal: AbortSignal,
  ): Promise<void> {
    const model = body.model ?? FAKE_MODEL_ID;
    const created = Math.floor(Date.now() / 1000);
    const frame = (choices: unknown[], extra: Record<string, unknown> = {}): string =>
      `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices, ...extra })}\n\n`;
    const choice = (delta: unknown, finish_reason: string | null = null): unknown[] => [
      { index: 0, delta, finish_reason },
    ];

    const frames: string[] = [frame(choice({ role: "assistant", content: "" }))];
    for (const piece of plan.contentPieces) frames.push(frame(choice({ content: piece })));
    if (plan.toolCall) {
      const tc = plan.toolCall;
      frames.push(
        frame(
          choice({
            tool_calls: [
              { index: 0, id: tc.id, type: "function", function: { name: tc.name, arguments: "" } },
            ],
          }),
        ),
      );
      for (const piece of splitPieces(tc.arguments, 3)) {
        frames.push(frame(choice({ tool_calls: [{ index: 0, function: { arguments: piece } }] })));
      }
    }
    frames.push(frame(choice({}, plan.finishReason)));
    if (body.stream_options?.include_usage) frames.push(frame([], { usage: usageFor(body, plan) }));

    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
    });
    res.flushHeaders();
    for (const f of frames) {
      if (plan.delayMs > 0) await sleep(plan.delayMs, undefined, { signal });
      if (signal.aborted || res.destroyed) return;
      res.write(f);
    }
    if (signal.aborted || res.destroyed) return;
    res.end("data: [DONE]\n\n");
  }

  function jsonReply(
    res: ServerResponse,
    body: ChatRequestBody,
    plan: Extract<ReplyPlan, { kind: "reply" }>,
    id: string,
  ): void {
    const content = plan.contentPieces.join("");
    const message: Record<string, unknown> = { role: "assistant", content };
    if (plan.toolCall) {
      const tc = plan.toolCall;
      message.tool_calls = [
        { id: tc.id, type: "function", function: { name: tc.name, arguments: tc.arguments } },
      ];
    }
    sendJson(res, 200, {
      id,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: body.model ?? FAKE_MODEL_ID,
      choices: [{ index: 0, message, finish_reason: plan.finishReason }],
      usage: usageFor(body, plan),
    });
  }

  async function handleChat(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> {
    const raw = await readBody(req);
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      sendJson(res, 400, errorBody("request body is not valid JSON", "invalid_request_error"));
      return;
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      sendJson(res, 400, errorBody("request body must be a JSON object", "invalid_request_error"));
      return;
    }
    const body = parsed as ChatRequestBody;
    const recorded: RecordedRequest = { body, receivedAt: Date.now() };
    const auth = req.headers.authorization;
    if (auth !== undefined) recorded.authorization = auth;
    requests.push(recorded);

    const n = ++seq;
    const plan = planReply(body, `call_fake_${n}`);
    const id = `chatcmpl-fake-${n}`;
    if (plan.kind === "fail" || body.stream !== true) {
      if (plan.delayMs > 0) await sleep(plan.delayMs, undefined, { signal });
      if (signal.aborted) return;
      if (plan.kind === "fail") sendJson(res, plan.status, errorBody("fake failure", "fake_error"));
      else jsonReply(res, body, plan, id);
      return;
    }
    await streamReply(res, body, plan, id, signal);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (req.method === "GET" && MODEL_PATHS.has(path)) {
      sendJson(res, 200, {
        object: "list",
        data: [{ id: FAKE_MODEL_ID, object: "model", owned_by: "pi-fleet" }],
      });
      return;
    }
    if (!CHAT_PATHS.has(path)) {
      sendJson(res, 404, errorBody(`no route for ${req.method} ${path}`, "not_found"));
      return;
    }
    if (req.method !== "POST") {
      sendJson(res, 405, errorBody("use POST", "invalid_request_error"));
      return;
    }
    const ctl = new AbortController();
    active.add(ctl);
    inFlight++;
    let settled = false;
    const settle = (): void => {
      if (settled) return;
      settled = true;
      inFlight--;
      active.delete(ctl);
    };
    res.on("close", () => {
      if (!res.writableFinished) {
        if (!closing) disconnects++;
        ctl.abort();
      }
      settle();
    });
    try {
      await handleChat(req, res, ctl.signal);
    } catch (err) {
      // Aborts (client gone / server closing) are expected; anything else becomes a 500.
      if (!ctl.signal.aborted && !res.headersSent) {
        sendJson(res, 500, errorBody(`fake LLM error: ${String(err)}`, "server_error"));
      } else if (!res.destroyed && !res.writableEnded) {
        res.destroy();
      }
    }
  }

  const server: Server = createServer((req, res) => {
    void handle(req, res);
  });
  server.on("clientError", (_err, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;

  return {
    url,
    baseUrl: `${url}/v1`,
    requests,
    get inFlight() {
      return inFlight;
    },
    get disconnects() {
      return disconnects;
    },
    reset() {
      requests.length = 0;
      disconnects = 0;
    },
    close() {
      closing = true;
      for (const ctl of active) ctl.abort();
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}
