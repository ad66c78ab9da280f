// fork, clone, new_session, switch_session and export_html through the real gateway and worker
// (scripted fake LLM): a fork is a new fleet session, listed with its branch as history, that
// prompts continue on its own; the source stays as it was; busy sessions answer 409.
import { openSse, waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

let stack: InProcessStack;
let source = "";
const project = "/v1/projects/forks";
const sessionPath = (id: string) => `${project}/sessions/${id}`;

interface CommandAnswer {
  type: string;
  success: boolean;
  data?: Record<string, unknown>;
  error?: string;
}

interface Message {
  role: string;
  content: unknown;
}

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "fork");
  await stack.call("POST", "/v1/projects", { name: "forks" });
  source = ((await stack.call("POST", `${project}/sessions`, { name: "main" })).json as { id: string }).id;
  await promptAndWait(source, "[[reply:one]] first");
  await promptAndWait(source, "[[reply:two]] second");
});

afterAll(async () => {
  await stack?.close();
});

/** Queues a prompt and waits until its run finished. */
async function promptAndWait(session: string, text: string): Promise<void> {
  const res = await stack.call("POST", `${sessionPath(session)}/prompt`, { text });
  expect(res.status).toBe(200);
  const { runId } = res.json as { runId: string };
  await waitFor(
    async () => {
      const run = (await stack.call("GET", `${sessionPath(session)}/runs/${runId}`)).json as {
        status: string;
      };
      return run.status === "finished" ? true : undefined;
    },
    { timeoutMs: 15_000 },
  );
}

async function command(session: string, body: Record<string, unknown>) {
  const res = await stack.call("POST", `${sessionPath(session)}/commands`, body);
  return { status: res.status, answer: res.json as CommandAnswer };
}

async function history(session: string): Promise<Message[]> {
  return ((await stack.call("GET", sessionPath(session))).json as { messages: Message[] }).messages;
}

/** Role and text of each message. */
function transcript(messages: Message[]): string[] {
  return messages.map((m) => {
    const text =
      typeof m.content === "string"
        ? m.content
        : (m.content as { type: string; text?: string }[])
            .filter((p) => p.type === "text")
            .map((p) => p.text)
            .join("");
    return `${m.role}:${text}`;
  });
}

const SOURCE = ["user:[[reply:one]] first", "assistant:one", "user:[[reply:two]] second", "assistant:two"];

describe("session fork over REST", () => {
  it("forks into a new listed session holding the branch, which prompts continue", async () => {
    const activity = await openSse(`${stack.gateway.url}${project}/events?after=0`);
    const forkable = await command(source, { type: "get_fork_messages" });
    const target = (forkable.answer.data!.messages as { entryId: string; text: string }[]).find(
      (m) => m.text === "[[reply:two]] second",
    );
    expect(target).toBeDefined();

    const forked = await command(source, { type: "fork", entryId: target!.entryId });
    expect(forked.status).toBe(200);
    expect(forked.answer).toMatchObject({
      type: "fork",
      success: true,
      data: { text: "[[reply:two]] second", cancelled: false, sessionId: expect.any(String) },
    });
    const fork = forked.answer.data!.sessionId as string;
    expect(fork).not.toBe(source);

    // Listed, named after the source, with the branch as its history.
    const list = (await stack.call("GET", `${project}/sessions`)).json as {
      sessions: { id: string; name?: string; firstMessage: string; messageCount: number }[];
    };
    expect(list.sessions.find((s) => s.id === fork)).toMatchObject({
      name: "main (fork)",
      firstMessage: "[[reply:one]] first",
      messageCount: 2,
    });
    expect(transcript(await history(fork))).toEqual(SOURCE.slice(0, 2));
    const piMessages = await command(fork, { type: "get_messages" });
    expect(transcript(piMessages.answer.data?.messages as Message[])).toEqual(SOURCE.slice(0, 2));
    await activity.waitFor((e) => (e.json as { type: string; sessionId?: string }).sessionId === fork, 5000);
    expect(activity.events.map((e) => e.json)).toContainEqual({
      type: "session_created",
      sessionId: fork,
      name: "main (fork)",
    });
    activity.close();

    // A prompt on the fork sends the branch (not the source's second exchange) and stays there.
    stack.fake.reset();
    await promptAndWait(fork, "[[reply:three]] instead");
    const sent = JSON.stringify(stack.fake.requests.at(-1)?.body.messages);
    expect(sent).toContain("first");
    expect(sent).toContain("instead");
    expect(sent).not.toContain("second");
    expect(transcript(await history(fork))).toEqual([
      ...SOURCE.slice(0, 2),
      "user:[[reply:three]] instead",
      "assistant:three",
    ]);
    expect(transcript(await history(source))).toEqual(SOURCE);
    const sourceMessages = await command(source, { type: "get_messages" });
    expect(transcript(sourceMessages.answer.data?.messages as Message[])).toEqual(SOURCE);
  });

  it("keeps a clone's derived name within the 200-character limit of every session name", async () => {
    const long = (
      (await stack.call("POST", `${project}/sessions`, { name: "é".repeat(200) })).json as { id: string }
    ).id;
    await promptAndWait(long, "[[reply:ok]] hi");
    let id = long;
    for (let i = 0; i < 2; i++) {
      const cloned = await command(id, { type: "clone" });
      expect(cloned.answer).toMatchObject({ success: true });
      id = cloned.answer.data?.sessionId as string;
      const name = (
        (await stack.call("GET", `${project}/sessions`)).json as { sessions: { id: string; name?: string }[] }
      ).sessions.find((s) => s.id === id)?.name;
      // Shortened source name + " (clone)": 200 characters (code points, as the schemas count).
      expect(name).toBe(`${"é".repeat(192)} (clone)`);
    }
  });

  it("clones, creates empty sessions by id and never takes or shows server paths", async () => {
    const cloned = await command(source, { type: "clone" });
    expect(cloned.answer).toMatchObject({ success: true, data: { cancelled: false } });
    const clone = cloned.answer.data!.sessionId as string;
    expect(transcript(await history(clone))).toEqual(SOURCE);

    const fresh = await command(source, { type: "new_session", parentSession: source });
    expect(fresh.answer).toMatchObject({ success: true, data: { cancelled: false } });
    const empty = fresh.answer.data!.sessionId as string;
    expect(await history(empty)).toEqual([]);
    await promptAndWait(empty, "[[reply:hello]] hi");
    expect(transcript(await history(empty))).toEqual(["user:[[reply:hello]] hi", "assistant:hello"]);

    const ids = ((await stack.call("GET", `${project}/sessions`)).json as { sessions: { id: string }[] })
      .sessions;
    expect(ids.map((s) => s.id)).toEqual(expect.arrayContaining([source, clone, empty]));

    const byPath = await command(source, {
      type: "new_session",
      parentSession: `${stack.workspace}/default/sessions/forks/${source}.jsonl`,
    });
    expect(byPath).toMatchObject({ status: 200, answer: { success: false } });
    const unknown = await command(source, { type: "new_session", parentSession: "no-such-session" });
    expect(unknown.answer).toEqual({
      type: "new_session",
      success: false,
      error: "Session not found: no-such-session",
    });

    const switched = await command(source, { type: "switch_session", sessionPath: "/tmp/x.jsonl" });
    expect(switched.status).toBe(400);

    const exported = await command(clone, { type: "export_html" });
    expect(exported.status).toBe(200);
    const html = exported.answer.data?.html as string;
    expect(html).toMatch(/^<!DOCTYPE html>/i);
    expect(html).not.toContain(stack.workspace);
    const data = /<script id="session-data" type="application\/json">([A-Za-z0-9+/=]*)<\/script>/.exec(html);
    const decoded = Buffer.from(data![1]!, "base64").toString("utf8");
    expect(decoded).toContain("[[reply:two]] second");
    expect(decoded).not.toContain(stack.workspace);
    const withPath = await command(clone, { type: "export_html", outputPath: "/tmp/out.html" });
    expect(withPath.answer.success).toBe(false);
  });

  it("answers 409 while a run is active and creates nothing", async () => {
    const before = ((await stack.call("GET", `${project}/sessions`)).json as { sessions: unknown[] }).sessions
      .length;
    const long = await stack.call("POST", `${sessionPath(source)}/prompt`, {
      text: "[[delay:20]] [[deltas:200]] [[tag:long]]",
    });
    const { runId, offset } = long.json as { runId: string; offset: string };
    const sse = await openSse(`${stack.gateway.url}${sessionPath(source)}/events?after=${offset}`);
    await sse.waitFor((e) => (e.json as { type?: string })?.type === "message_update", 10_000);
    for (const type of ["fork", "clone", "new_session", "export_html"]) {
      const res = await command(source, type === "fork" ? { type, entryId: "x" } : { type });
      expect(res.status, type).toBe(409);
    }
    await stack.call("POST", `${sessionPath(source)}/abort`, {});
    await sse.waitFor((e) => (e.json as { type?: string })?.type === "run_aborted", 10_000);
    sse.close();
    const run = (await stack.call("GET", `${sessionPath(source)}/runs/${runId}`)).json as { status: string };
    expect(run.status).toBe("aborted");
    const after = ((await stack.call("GET", `${project}/sessions`)).json as { sessions: unknown[] }).sessions
      .length;
    expect(after).toBe(before);
  });
});
