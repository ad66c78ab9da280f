// Small HTTP helpers for e2e tests: JSON calls against a stack (`api(url)`), raw requests whose
// path is sent byte for byte (fetch would normalise `..` and `%2e%2e`), the fake-LLM provider
// registration, and the response shapes tests read.

import { request as httpRequest } from "node:http";
import type { FakeLlm } from "@pi-fleet/testkit";

/** A JSON object as returned by the API (fields are checked by the tests). */
export type Json = Record<string, unknown>;

/** One HTTP answer: status, parsed JSON body (undefined when not JSON), raw text and headers. */
export interface ApiResponse<T = Json> {
  status: number;
  json: T;
  text: string;
  headers: Headers;
}

/** `POST …/prompt` answer. */
export interface PromptResult {
  ok: true;
  runId: string;
  offset: string;
  position: number;
}

/** `GET …/runs/{runId}` answer. */
export interface RunView {
  id: string;
  sessionId: string;
  status: string;
  seq: number;
  createdAt: string;
  startedAt?: string;
  endedAt?: string;
  queuedOffset: string;
  startOffset?: string;
  endOffset?: string;
  usage?: {
    input: number;
    output: number;
    cacheRead: number;
    cacheWrite: number;
    totalTokens: number;
    cost: number;
  };
  error?: string;
}

/** A pi AgentMessage as served by `GET …/sessions/{id}` (only what the tests read). */
export interface HistoryMessage {
  role: string;
  content: string | { type: string; text?: string; name?: string }[];
}

/** Every error body (API.md "Errors"). */
export interface ErrorBody {
  error: string;
  code: string;
  details?: unknown;
}

/** Request options of {@link api} calls. */
export interface CallOptions {
  headers?: Record<string, string>;
  /** Sent verbatim instead of `JSON.stringify(body)`. */
  rawBody?: string | Uint8Array;
}

async function call<T>(
  base: string,
  method: string,
  path: string,
  body: unknown,
  opts: CallOptions = {},
): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...opts.headers };
  let payload: string | Uint8Array | undefined = opts.rawBody;
  if (payload === undefined && body !== undefined) {
    payload = JSON.stringify(body);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === "content-type")) {
      headers["content-type"] = "application/json";
    }
  }
  const init: RequestInit = { method, headers, signal: AbortSignal.timeout(30_000) };
  if (payload !== undefined) init.body = payload;
  const res = await fetch(`${base}${path}`, init);
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json: json as T, text, headers: res.headers };
}

/** JSON client for one base URL. `body` undefined sends no body (and no content-type). */
export function api(base: string) {
  return {
    get: <T = Json>(path: string, opts?: CallOptions) => call<T>(base, "GET", path, undefined, opts),
    delete: <T = Json>(path: string, opts?: CallOptions) => call<T>(base, "DELETE", path, undefined, opts),
    post: <T = Json>(path: string, body?: unknown, headers?: Record<string, string>) =>
      call<T>(base, "POST", path, body, headers ? { headers } : {}),
    put: <T = Json>(path: string, body?: unknown, headers?: Record<string, string>) =>
      call<T>(base, "PUT", path, body, headers ? { headers } : {}),
    patch: <T = Json>(path: string, body?: unknown, headers?: Record<string, string>) =>
      call<T>(base, "PATCH", path, body, headers ? { headers } : {}),
    /** Any method with full control over headers and the raw body. */
    send: <T = Json>(method: string, path: string, opts: CallOptions) =>
      call<T>(base, method, path, undefined, opts),
  };
}

/** The client returned by {@link api}. */
export type Api = ReturnType<typeof api>;

/**
 * Sends one request with `path` exactly as given (no URL normalisation, unlike fetch) and
 * resolves the status and body text.
 */
export function rawRequest(
  base: string,
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; text: string; json: unknown }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: hostname, port: Number(port), method, path, headers: opts.headers, timeout: 15_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, text, json });
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`timeout: ${method} ${path}`)));
    req.on("error", reject);
    req.end(opts.body);
  });
}

/** API key the fake provider is registered with. */
export const FAKE_API_KEY = "sk-fake";

/** Registers the fake LLM as the org's custom provider `fake` with model `fake-model`. */
export async function registerFakeProvider(base: string, llm: FakeLlm): Promise<ApiResponse> {
  const res = await api(base).put("/v1/custom/providers", {
    provider: "fake",
    baseUrl: llm.baseUrl,
    api: "openai-completions",
    apiKey: FAKE_API_KEY,
    models: [{ id: "fake-model", name: "Fake" }],
  });
  if (res.status !== 200) throw new Error(`registering the fake provider failed: ${res.status} ${res.text}`);
  return res;
}

/** Creates (or gets) a project by name and returns its id. */
export async function createProject(base: string, name: string): Promise<string> {
  const res = await api(base).post<{ id: string }>("/v1/projects", { name });
  if (res.status !== 200) throw new Error(`creating project ${name} failed: ${res.status} ${res.text}`);
  return res.json.id;
}

/** Creates a session the seed way (no body at all) and returns its id. */
export async function createSession(base: string, projectId: string): Promise<string> {
  const res = await api(base).post<{ id: string }>(`/v1/projects/${projectId}/sessions`);
  if (res.status !== 200) throw new Error(`creating a session failed: ${res.status} ${res.text}`);
  return res.json.id;
}

/** Posts a prompt and returns the answer; throws unless it is 200. */
export async function prompt(
  base: string,
  projectId: string,
  sessionId: string,
  text: string,
  headers?: Record<string, string>,
): Promise<PromptResult> {
  const res = await api(base).post<PromptResult>(
    `/v1/projects/${projectId}/sessions/${sessionId}/prompt`,
    { text },
    headers,
  );
  if (res.status !== 200) throw new Error(`prompt failed: ${res.status} ${res.text}`);
  return res.json;
}

/** Reads one run record. */
export async function getRun(base: string, projectId: string, sessionId: string, runId: string) {
  return api(base).get<RunView>(`/v1/projects/${projectId}/sessions/${sessionId}/runs/${runId}`);
}

const TERMINAL = new Set(["finished", "failed", "aborted", "interrupted", "cancelled"]);

/** Polls a run until it reaches a terminal state and returns it. */
export async function waitForRunEnd(
  base: string,
  projectId: string,
  sessionId: string,
  runId: string,
  timeoutMs = 30_000,
): Promise<RunView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await getRun(base, projectId, sessionId, runId);
    if (res.status === 200 && TERMINAL.has(res.json.status)) return res.json;
    if (Date.now() > deadline) {
      throw new Error(`run ${runId} did not end within ${timeoutMs}ms (last: ${res.status} ${res.text})`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `…/sessions/{id}/events` URL, optionally with `?after=`. */
export function eventsUrl(base: string, projectId: string, sessionId: string, after?: string): string {
  const q = after === undefined ? "" : `?after=${encodeURIComponent(after)}`;
  return `${base}/v1/projects/${projectId}/sessions/${sessionId}/events${q}`;
}
