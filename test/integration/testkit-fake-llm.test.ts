// Drives the testkit's fake OpenAI-compatible LLM over real loopback HTTP and checks the
// chat-completions wire format and every directive, since worker/e2e tests rely on both.

import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { type FakeLlm, openSse, type SseEvent, startFakeLlm, waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";

interface ChunkChoice {
  index: number;
  delta: {
    role?: string;
    content?: string;
    tool_calls?: {
      index: number;
      id?: string;
      type?: string;
      function?: { name?: string; arguments?: string };
    }[];
  };
  finish_reason: string | null;
}
interface Chunk {
  id: string;
  object: string;
  model: string;
  choices: ChunkChoice[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

/** Folds a finished SSE stream back into what an OpenAI client would assemble. */
function assemble(events: SseEvent[]) {
  expect(events.at(-1)?.data).toBe("[DONE]");
  const chunks = events.slice(0, -1).map((e) => e.json as Chunk);
  for (const c of chunks) expect(c.object).toBe("chat.completion.chunk");
  const withChoice = chunks.filter((c) => c.choices.length > 0);
  const contentDeltas = withChoice
    .map((c) => c.choices[0]?.delta.content)
    .filter((s) => s !== undefined && s !== "");
  const toolDeltas = withChoice.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
  const finishes = withChoice.map((c) => c.choices[0]?.finish_reason).filter((f) => f !== null);
  const usageChunks = chunks.filter((c) => c.usage !== undefined);
  return {
    chunks,
    firstDelta: withChoice[0]?.choices[0]?.delta,
    content: contentDeltas.join(""),
    contentDeltas,
    toolDeltas,
    finishes,
    usageChunks,
  };
}

let llm: FakeLlm;

beforeAll(async () => {
  llm = await startFakeLlm();
});
afterAll(async () => {
  await llm.close();
});
beforeEach(() => {
  llm.reset();
});

type Msg = Record<string, unknown>;

async function streamChat(messages: Msg[], extra: Record<string, unknown> = {}) {
  const conn = await openSse(`${llm.baseUrl}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
    body: JSON.stringify({ model: "fake-model", stream: true, messages, ...extra }),
  });
  expect(conn.status).toBe(200);
  expect(conn.headers.get("content-type")).toContain("text/event-stream");
  await conn.closed;
  expect(conn.error).toBeUndefined();
  return assemble(conn.events);
}

const user = (content: unknown): Msg => ({ role: "user", content });

describe("fake LLM streaming", () => {
  it("echoes the user text by default, in several chunks, with usage and [DONE]", async () => {
    const prompt = "hello world [[tag:plain-1]]";
    const r = await streamChat([{ role: "system", content: "sys" }, user(prompt)], {
      stream_options: { include_usage: true },
    });
    expect(r.firstDelta).toEqual({ role: "assistant", content: "" });
    expect(r.content).toBe(`ok: ${prompt}`);
    expect(r.contentDeltas.length).toBeGreaterThan(1);
    expect(r.finishes).toEqual(["stop"]);
    expect(r.toolDeltas).toEqual([]);
    expect(r.usageChunks).toHaveLength(1);
    const usageChunk = r.usageChunks[0]!;
    expect(usageChunk.choices).toEqual([]);
    expect(r.chunks.at(-1)).toBe(usageChunk);
    const u = usageChunk.usage!;
    expect(u.prompt_tokens).toBeGreaterThan(0);
    expect(u.completion_tokens).toBeGreaterThan(0);
    expect(u.total_tokens).toBe(u.prompt_tokens + u.completion_tokens);
    expect(new Set(r.chunks.map((c) => c.id)).size).toBe(1);
    expect(r.chunks[0]?.model).toBe("fake-model");
  });

  it("truncates the echo to the first 80 chars and omits usage unless asked", async () => {
    const long = "x".repeat(200);
    const r = await streamChat([user(long)]);
    expect(r.content).toBe(`ok: ${"x".repeat(80)}`);
    expect(r.usageChunks).toHaveLength(0);
  });

  it("streams exactly the [[reply:TEXT]] text, reading text parts of array content", async () => {
    const r = await streamChat([
      user("earlier [[reply:not this one]]"),
      { role: "assistant", content: "whatever" },
      user([
        { type: "text", text: "[[reply:Hello, fleet! ] still text]]" },
        { type: "image_url", image_url: { url: "data:," } },
      ]),
    ]);
    expect(r.content).toBe("Hello, fleet! ] still text");
    expect(r.finishes).toEqual(["stop"]);
  });

  it("emits a bash tool call, then answers with the tool result once it comes back", async () => {
    const first = await streamChat([user("please [[bash:echo hi && ls]]")]);
    expect(first.content).toBe("running");
    expect(first.finishes).toEqual(["tool_calls"]);
    const [head, ...fragments] = first.toolDeltas;
    expect(head).toMatchObject({ index: 0, type: "function", function: { name: "bash", arguments: "" } });
    expect(head?.id).toMatch(/\S/);
    expect(fragments.length).toBeGreaterThan(1);
    for (const f of fragments) expect(f.index).toBe(0);
    const args = fragments.map((f) => f.function?.arguments ?? "").join("");
    expect(JSON.parse(args)).toEqual({ command: "echo hi && ls" });

    const second = await streamChat([
      user("please [[bash:echo hi && ls]]"),
      {
        role: "assistant",
        content: "running",
        tool_calls: [{ id: head?.id, type: "function", function: { name: "bash", arguments: args } }],
      },
      { role: "tool", tool_call_id: head?.id, content: "  hi\nfile.txt\n\n" },
    ]);
    expect(second.content).toBe("tool said: hi\nfile.txt");
    expect(second.finishes).toEqual(["stop"]);
    expect(second.toolDeltas).toEqual([]);
  });

  it("streams N numbered deltas for [[deltas:N]]", async () => {
    const r = await streamChat([user("[[deltas:50]]")]);
    expect(r.contentDeltas).toHaveLength(50);
    expect(r.contentDeltas[0]).toBe("d0 ");
    expect(r.contentDeltas[49]).toBe("d49 ");
    expect(r.content).toBe(Array.from({ length: 50 }, (_, i) => `d${i} `).join(""));
  });

  it("waits [[delay:MS]] before each chunk", async () => {
    const started = performance.now();
    const r = await streamChat([user("[[delay:30]] [[deltas:3]]")]);
    const elapsed = performance.now() - started;
    // role chunk + 3 deltas + finish chunk = 5 delayed frames
    expect(r.contentDeltas).toHaveLength(3);
    expect(elapsed).toBeGreaterThanOrEqual(5 * 30 - 10);
  });
});

describe("fake LLM errors, recording and other routes", () => {
  it("answers [[fail:STATUS]] with that status and an OpenAI-style error", async () => {
    const res = await fetch(`${llm.baseUrl}/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ stream: true, messages: [user("[[fail:503]]")] }),
    });
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ error: { message: "fake failure", type: "fake_error" } });

    const conn = await openSse(`${llm.url}/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ stream: true, messages: [user("[[fail:429]] [[reply:never]]")] }),
    });
    expect(conn.status).toBe(429);
    expect(conn.events).toEqual([]);
    expect(JSON.parse(conn.errorBody ?? "")).toMatchObject({ error: { type: "fake_error" } });
  });

  it("records bodies and Authorization, and resets", async () => {
    await streamChat([user("one [[tag:a]]")]);
    await fetch(`${llm.baseUrl}/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ messages: [user("two")] }),
    });
    expect(llm.requests).toHaveLength(2);
    const [a, b] = llm.requests;
    expect(a?.authorization).toBe("Bearer sk-test");
    expect(a?.body.stream).toBe(true);
    expect(a?.body.messages?.[0]?.content).toBe("one [[tag:a]]");
    expect(b?.authorization).toBeUndefined();
    expect(b?.body.messages?.[0]?.content).toBe("two");
    expect(a!.receivedAt).toBeLessThanOrEqual(b!.receivedAt);
    expect(llm.inFlight).toBe(0);
    llm.reset();
    expect(llm.requests).toHaveLength(0);
  });

  it("answers non-streaming requests with a chat.completion object", async () => {
    const res = await fetch(`${llm.baseUrl}/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "m1", messages: [user("[[bash:pwd]]")] }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      object: string;
      model: string;
      choices: {
        message: { content: string; tool_calls: { function: { name: string; arguments: string } }[] };
        finish_reason: string;
      }[];
      usage: { total_tokens: number };
    };
    expect(body.object).toBe("chat.completion");
    expect(body.model).toBe("m1");
    expect(body.choices[0]?.finish_reason).toBe("tool_calls");
    expect(body.choices[0]?.message.content).toBe("running");
    expect(body.choices[0]?.message.tool_calls[0]?.function.name).toBe("bash");
    expect(JSON.parse(body.choices[0]?.message.tool_calls[0]?.function.arguments ?? "")).toEqual({
      command: "pwd",
    });
    expect(body.usage.total_tokens).toBeGreaterThan(0);
  });

  it("rejects bad JSON with 400 without recording it, lists models, 404s unknown paths", async () => {
    const bad = await fetch(`${llm.baseUrl}/chat/completions`, { method: "POST", body: "{nope" });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/JSON/);
    expect(llm.requests).toHaveLength(0);

    const models = await fetch(`${llm.baseUrl}/models`);
    expect(await models.json()).toMatchObject({ data: [{ id: "fake-model", object: "model" }] });

    const missing = await fetch(`${llm.url}/v1/embeddings`, { method: "POST", body: "{}" });
    expect(missing.status).toBe(404);
  });

  it("counts a client abort mid-stream as a disconnect and keeps serving", async () => {
    const conn = await openSse(`${llm.baseUrl}/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ stream: true, messages: [user("[[delay:40]] [[deltas:100]]")] }),
    });
    await conn.next();
    expect(llm.inFlight).toBe(1);
    expect(llm.disconnects).toBe(0);
    conn.close();
    await conn.closed;
    await waitFor(() => llm.disconnects === 1 && llm.inFlight === 0, { message: "server noticed the abort" });
    // A stream that had to run to the end would take 100 * 40 ms; it was cut short.
    expect(conn.events.length).toBeLessThan(10);

    const after = await streamChat([user("[[reply:still alive]]")]);
    expect(after.content).toBe("still alive");
    expect(llm.disconnects).toBe(1);
  });

  it("close() ends in-flight streams without counting them as disconnects", async () => {
    const own = await startFakeLlm();
    const conn = await openSse(`${own.baseUrl}/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ stream: true, messages: [user("[[delay:50]] [[deltas:100]]")] }),
    });
    await conn.next();
    await own.close();
    await conn.closed;
    expect(conn.ended).toBe(true);
    expect(own.disconnects).toBe(0);
    expect(own.inFlight).toBe(0);
  });
});

describe("fake-llm-cli", () => {
  it("prints one listening line, serves, and exits 0 on SIGTERM", async () => {
    const child = spawn(
      process.execPath,
      [
        "--conditions=@pi-fleet/source",
        fileURLToPath(new URL("../../libs/testkit/src/fake-llm-cli.ts", import.meta.url)),
      ],
      { env: { ...process.env, FAKE_LLM_PORT: "0" }, stdio: ["ignore", "pipe", "inherit"] },
    );
    try {
      const lines = createInterface({ input: child.stdout! });
      const [line] = (await once(lines, "line")) as [string];
      const m =
        /^fake LLM listening on (http:\/\/127\.0\.0\.1:\d+) \(OpenAI-compatible base URL: (\S+)\)$/.exec(
          line,
        );
      expect(m).not.toBeNull();
      expect(m?.[2]).toBe(`${m?.[1]}/v1`);
      const res = await fetch(`${m?.[2]}/models`);
      expect(res.status).toBe(200);
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      const [code] = (await exited) as [number | null];
      expect(code).toBe(0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });
});
