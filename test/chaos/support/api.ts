// JSON calls against a gateway, with timeouts and the shapes chaos tests read.

import type { FakeLlm } from "@pi-fleet/testkit";

/** A JSON object as returned by the API. */
export type Json = Record<string, unknown>;

/** One HTTP answer. `status` 0 = no answer (connection refused, timeout). */
export interface Answer<T = Json> {
  status: number;
  json: T;
  text: string;
}

/** `POST …/prompt` answer. */
export interface PromptAnswer {
  ok: true;
  runId: string;
  offset: string;
  position: number;
}

/** `GET …/runs/{id}` answer. */
export interface RunView {
  id: string;
  sessionId: string;
  status: string;
  seq: number;
  startOffset?: string;
  endOffset?: string;
  error?: string;
  reason?: string;
}

/** Terminal run states. */
export const TERMINAL_STATES: ReadonlySet<string> = new Set([
  "finished",
  "failed",
  "aborted",
  "interrupted",
  "cancelled",
]);

/** Terminal run events. */
export const TERMINAL_EVENTS: ReadonlySet<string> = new Set([
  "run_finished",
  "run_failed",
  "run_aborted",
  "run_interrupted",
  "run_cancelled",
]);

/** Calls `method base+path` with a JSON body; never throws (status 0 on a network error). */
export async function call<T = Json>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 15_000,
): Promise<Answer<T>> {
  const init: RequestInit = { method, signal: AbortSignal.timeout(timeoutMs) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { "content-type": "application/json" };
  }
  try {
    const res = await fetch(`${base}${path}`, init);
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json: json as T, text };
  } catch (err) {
    return { status: 0, json: undefined as T, text: String(err) };
  }
}

/** Like {@link call} but throws unless the status is 200. */
export async function ok<T = Json>(base: string, method: string, path: string, body?: unknown): Promise<T> {
  const res = await call<T>(base, method, path, body);
  if (res.status !== 200) throw new Error(`${method} ${path} → ${res.status} ${res.text.slice(0, 500)}`);
  return res.json;
}

/** Registers the fake LLM as custom provider `fake` with model `fake-model`. */
export async function registerFake(base: string, llm: FakeLlm): Promise<void> {
  await ok(base, "PUT", "/v1/custom/providers", {
    provider: "fake",
    baseUrl: llm.baseUrl,
    api: "openai-completions",
    apiKey: "sk-fake",
    models: [{ id: "fake-model" }],
  });
}

/** Creates (or gets) a project by name; returns its id. */
export async function createProject(base: string, name: string): Promise<string> {
  return (await ok<{ id: string }>(base, "POST", "/v1/projects", { name })).id;
}

/** Creates a session on the fake model; returns its id. */
export async function createSession(base: string, project: string): Promise<string> {
  return (
    await ok<{ id: string }>(base, "POST", `/v1/projects/${project}/sessions`, {
      provider: "fake",
      modelId: "fake-model",
    })
  ).id;
}

/** Session path prefix. */
export function sessionPath(project: string, session: string): string {
  return `/v1/projects/${project}/sessions/${session}`;
}

/** Posts a prompt (200 or throws). */
export function prompt(base: string, project: string, session: string, text: string): Promise<PromptAnswer> {
  return ok<PromptAnswer>(base, "POST", `${sessionPath(project, session)}/prompt`, { text });
}

/** Reads a run record. */
export function getRun(
  base: string,
  project: string,
  session: string,
  runId: string,
): Promise<Answer<RunView>> {
  return call<RunView>(base, "GET", `${sessionPath(project, session)}/runs/${runId}`);
}

/** Polls a run until it is terminal (or throws after `timeoutMs`). */
export async function waitRunEnd(
  base: string,
  project: string,
  session: string,
  runId: string,
  timeoutMs = 30_000,
): Promise<RunView> {
  const deadline = Date.now() + timeoutMs;
  let last: Answer<RunView> | undefined;
  for (;;) {
    last = await getRun(base, project, session, runId);
    if (last.status === 200 && TERMINAL_STATES.has(last.json.status)) return last.json;
    if (Date.now() > deadline) {
      throw new Error(`run ${runId} not terminal after ${timeoutMs} ms (last: ${last.status} ${last.text})`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SSE URL of a session, optionally with `?after=`. */
export function eventsUrl(base: string, project: string, session: string, after?: string): string {
  const q = after === undefined ? "" : `?after=${encodeURIComponent(after)}`;
  return `${base}${sessionPath(project, session)}/events${q}`;
}
