// The README walkthrough against a real single-node process (`npm start`): register the fake LLM
// as a custom provider, create a project and a session, stream a prompt that runs the bash tool,
// and check the stream, the file the agent wrote, the run record, the history and key hygiene.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type FakeLlm, openSse, type SseConnection, startFakeLlm, uniquePrefix } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { collectUntil, endsRun, isEvent, typeOf, type WireEvent, wire } from "../support/events.ts";
import {
  api,
  eventsUrl,
  FAKE_API_KEY,
  type HistoryMessage,
  type PromptResult,
  type RunView,
  registerFakeProvider,
} from "../support/http.ts";
import { type Stack, startStack, stopAllStacks } from "../support/stack.ts";

let llm: FakeLlm;
let stack: Stack;
const sockets: SseConnection[] = [];

beforeAll(async () => {
  llm = await startFakeLlm();
  // debug: request lines are logged too, so the "key never logged" check covers more.
  stack = await startStack({
    redisUrl: inject("redisUrl"),
    prefix: uniquePrefix("e2e walkthrough"),
    env: { LOG_LEVEL: "debug" },
  });
});

afterAll(async () => {
  for (const s of sockets) s.close();
  await stopAllStacks();
  await llm?.close();
});

/** Numeric order of stream offsets `<ms>-<seq>`. */
function offsetKey(id: string): [bigint, bigint] {
  const [ms, seq] = id.split("-");
  return [BigInt(ms ?? "0"), BigInt(seq ?? "0")];
}
function offsetLess(a: string, b: string): boolean {
  const [am, as] = offsetKey(a);
  const [bm, bs] = offsetKey(b);
  return am < bm || (am === bm && as < bs);
}

describe("walkthrough (single-node process)", () => {
  it("runs a bash-tool prompt end to end over SSE", async () => {
    const http = api(stack.url);
    const provider = await registerFakeProvider(stack.url, llm);
    expect(provider.json).toMatchObject({ provider: "fake", apiKeyConfigured: true });
    expect(provider.text).not.toContain(FAKE_API_KEY);

    const project = await http.post<{ id: string; projectDir: string }>("/v1/projects", { name: "E2E Demo" });
    expect(project.status).toBe(200);
    expect(project.json.id).toBe("e2e-demo");

    // The seed contract sends no body (and no content-type) to create a session.
    const session = await http.post<{ id: string; createdAt: string }>("/v1/projects/e2e-demo/sessions");
    expect(session.status, session.text).toBe(200);
    const sid = session.json.id;
    expect(typeof sid).toBe("string");

    const sse = await openSse(eventsUrl(stack.url, "e2e-demo", sid, "0"));
    sockets.push(sse);
    expect(sse.status).toBe(200);
    expect(sse.headers.get("content-type")).toMatch(/^text\/event-stream/);

    const res = await http.post<PromptResult>(`/v1/projects/e2e-demo/sessions/${sid}/prompt`, {
      text: "[[bash:echo hi > out.txt]]",
    });
    expect(res.status, res.text).toBe(200);
    expect(res.json).toMatchObject({ ok: true, position: 0 });
    const { runId, offset } = res.json;

    const events = await collectUntil(sse, endsRun(runId), 60_000);
    const types = events.map(typeOf);
    const last = events.at(-1);
    expect(last && wire(last).type, `run ended with ${last?.data}`).toBe("run_finished");

    // Fleet and pi events in order, all for this run.
    const at = (pred: (e: (typeof events)[number]) => boolean): number => events.findIndex(pred);
    const queued = at(isEvent("run_queued", runId));
    const started = at(isEvent("run_started", runId));
    const toolStart = at((e) => typeOf(e) === "tool_execution_start" && wire(e).toolName === "bash");
    const toolEnd = at((e) => typeOf(e) === "tool_execution_end" && wire(e).toolName === "bash");
    const finished = at(isEvent("run_finished", runId));
    expect(
      [queued, started, toolStart, toolEnd, finished].every((i) => i >= 0),
      types.join(","),
    ).toBe(true);
    expect(queued).toBeLessThan(started);
    expect(started).toBeLessThan(toolStart);
    expect(toolStart).toBeLessThan(toolEnd);
    expect(toolEnd).toBeLessThan(finished);
    for (const e of events) {
      const w = wire(e);
      if (w.type.startsWith("run_")) expect(w.runId).toBe(runId);
    }
    const toolEndEvent = wire(events[toolEnd]!);
    expect(toolEndEvent.isError).toBe(false);

    // Every event has an id, and ids strictly increase.
    const ids = events.map((e) => e.id);
    expect(ids.every((id) => typeof id === "string" && /^\d+-\d+$/.test(id))).toBe(true);
    for (let i = 1; i < ids.length; i++) {
      expect(offsetLess(ids[i - 1]!, ids[i]!), `${ids[i - 1]} < ${ids[i]}`).toBe(true);
    }

    // message_update is lean: only the assistantMessageEvent delta.
    const updates = events.filter(isEvent("message_update")).map(wire);
    expect(updates.length).toBeGreaterThan(0);
    for (const u of updates) {
      expect(u).toHaveProperty("assistantMessageEvent");
      expect(u).not.toHaveProperty("message");
      expect(u).not.toHaveProperty("partial");
    }

    // The agent's bash tool ran in the project directory.
    const projectDir = join(stack.workspaceDir, "default", "projects", "e2e-demo");
    expect(project.json.projectDir).toBe(projectDir);
    expect((await readFile(join(projectDir, "out.txt"), "utf8")).trim()).toBe("hi");

    // The run record agrees with the stream.
    const run = await http.get<RunView>(`/v1/projects/e2e-demo/sessions/${sid}/runs/${runId}`);
    expect(run.status).toBe(200);
    expect(run.json).toMatchObject({ id: runId, sessionId: sid, status: "finished", seq: 1 });
    expect(run.json.usage?.totalTokens).toBeGreaterThan(0);
    expect(run.json.usage?.input).toBeGreaterThan(0);
    expect(run.json.usage?.output).toBeGreaterThan(0);
    expect(run.json.startedAt).toBeTypeOf("string");
    expect(run.json.endedAt).toBeTypeOf("string");
    expect(Date.parse(run.json.endedAt!)).toBeGreaterThanOrEqual(Date.parse(run.json.startedAt!));
    expect(run.json.queuedOffset).toBe(events[queued]!.id);
    expect(run.json.startOffset).toBe(events[started]!.id);
    expect(run.json.endOffset).toBe(events[finished]!.id);
    const finishedEvent = wire(events[finished]!) as WireEvent & { usage?: { totalTokens?: number } };
    expect(finishedEvent.usage?.totalTokens).toBe(run.json.usage?.totalTokens);

    // History: the persisted messages, no system prompt.
    const history = await http.get<{ id: string; messages: HistoryMessage[] }>(
      `/v1/projects/e2e-demo/sessions/${sid}`,
    );
    expect(history.status).toBe(200);
    const roles = history.json.messages.map((m) => m.role);
    expect(roles).toEqual(["user", "assistant", "toolResult", "assistant"]);
    expect(roles).not.toContain("system");
    const assistant = history.json.messages[1]!;
    expect(Array.isArray(assistant.content) && assistant.content.some((c) => c.type === "toolCall")).toBe(
      true,
    );

    // Subscribing from the prompt's offset starts exactly at this run's run_queued.
    const fromOffset = await openSse(eventsUrl(stack.url, "e2e-demo", sid, offset));
    sockets.push(fromOffset);
    expect(fromOffset.status).toBe(200);
    const first = await fromOffset.next(10_000);
    expect(wire(first)).toMatchObject({ type: "run_queued", runId });
    expect(first.id).toBe(events[queued]!.id);
    fromOffset.close();

    // The provider key reached the LLM, and nowhere else.
    expect(llm.requests.length).toBeGreaterThanOrEqual(2);
    for (const r of llm.requests) expect(r.authorization).toBe(`Bearer ${FAKE_API_KEY}`);
    const providers = await http.get<{ providers: { provider: string; apiKeyConfigured: boolean }[] }>(
      "/v1/custom/providers",
    );
    expect(providers.status).toBe(200);
    expect(providers.json.providers).toEqual([
      expect.objectContaining({ provider: "fake", apiKeyConfigured: true }),
    ]);
    expect(providers.text).not.toContain(FAKE_API_KEY);
    expect(providers.json.providers[0]).not.toHaveProperty("apiKey");
    const models = await http.get("/v1/models");
    expect(models.status).toBe(200);
    expect(models.text).not.toContain(FAKE_API_KEY);
    for (const e of events) expect(e.data).not.toContain(FAKE_API_KEY);
    expect(stack.logs()).not.toContain(FAKE_API_KEY);
  });
});
