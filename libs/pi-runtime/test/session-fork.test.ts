// fork, clone, new_session, switch_session and export_html through PiSession.command (faux
// provider): pi's branch extraction into new session files the fleet allocates (SessionFiles),
// pi's error texts, busy refusals, and no server paths in the exported HTML.
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fauxAssistantMessage } from "@earendil-works/pi-ai";
import { describe, expect, it } from "vitest";
import {
  type CreatedSession,
  openSession,
  type PiSession,
  type SessionFiles,
  type SessionSlot,
} from "../src/index.ts";
import { fauxRuntime, onCleanup, recordingSink, sessionDirs, tempDir } from "./helpers.ts";

type Dirs = Awaited<ReturnType<typeof sessionDirs>>;

/** SessionFiles over the test's sessions dir: ids s2, s3, …; the source session is "s1". */
function memoryFiles(dir: string, opts: { failRegister?: boolean } = {}) {
  const known = new Set(["s1"]);
  const registered: { slot: SessionSlot; created: CreatedSession }[] = [];
  let next = 2;
  const files: SessionFiles = {
    sessionFile: async (id) => (known.has(id) ? join(dir, `${id}.jsonl`) : undefined),
    allocate: async () => {
      const sessionId = `s${next++}`;
      return { sessionId, sessionFile: join(dir, `${sessionId}.jsonl`) };
    },
    register: async (slot, created) => {
      if (opts.failRegister) throw new Error("registry unavailable");
      registered.push({ slot, created });
      known.add(slot.sessionId);
    },
  };
  return { files, registered };
}

async function setup(options: Parameters<typeof fauxRuntime>[0] = {}) {
  const dirs = await sessionDirs();
  const { runtime, faux } = await fauxRuntime(options);
  const session = await openSession({ runtime, ...dirs });
  onCleanup(() => session.dispose());
  const { files, registered } = memoryFiles(dirname(dirs.sessionFile));
  /** Opens another session file of the test (e.g. a fork) on the same runtime. */
  const open = async (sessionFile: string) => {
    const other = await openSession({ runtime, ...dirs, sessionFile });
    onCleanup(() => other.dispose());
    return other;
  };
  return { dirs, runtime, faux, session, files, registered, open };
}

/** A session with two exchanges: first → "answer one", second → "answer two". */
async function twoExchanges(ctx: Awaited<ReturnType<typeof setup>>): Promise<void> {
  ctx.faux.setResponses([fauxAssistantMessage("answer one"), fauxAssistantMessage("answer two")]);
  expect(await ctx.session.run("first", {}, () => {})).toMatchObject({ status: "finished" });
  expect(await ctx.session.run("second", {}, () => {})).toMatchObject({ status: "finished" });
}

async function data(
  session: PiSession,
  request: { type: string; [k: string]: unknown },
  files?: SessionFiles,
): Promise<Record<string, unknown>> {
  const result = await session.command(request, files);
  expect(result).toMatchObject({ success: true });
  return (result as { data: Record<string, unknown> }).data;
}

/** The JSONL records of a session file. */
async function records(path: string): Promise<Record<string, unknown>[]> {
  return (await readFile(path, "utf8"))
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Role and text of each message (text: a string content, or the text parts joined). */
function transcript(messages: unknown[]): string[] {
  return (messages as { role: string; content: unknown }[]).map((m) => {
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

async function forkEntry(session: PiSession, text: string): Promise<string> {
  const { messages } = (await data(session, { type: "get_fork_messages" })) as {
    messages: { entryId: string; text: string }[];
  };
  const hit = messages.find((m) => m.text === text);
  if (!hit) throw new Error(`no fork message ${text}`);
  return hit.entryId;
}

describe("fork", () => {
  it("creates a new session holding the branch before the user message; the source is unchanged", async () => {
    const ctx = await setup();
    await twoExchanges(ctx);
    const { session, dirs, files, registered } = ctx;
    const before = await readFile(dirs.sessionFile, "utf8");
    const entryId = await forkEntry(session, "second");

    const result = await data(session, { type: "fork", entryId }, files);
    expect(result).toEqual({ text: "second", cancelled: false, sessionId: "s2" });

    // The new file: pi's branch (system message, first user message, its answer), a new pi id,
    // the source file as parent.
    const file = join(dirname(dirs.sessionFile), "s2.jsonl");
    const [header, ...entries] = await records(file);
    expect(header).toMatchObject({ type: "session", version: 3, cwd: dirs.projectDir });
    expect(header!.parentSession).toBe(dirs.sessionFile);
    expect(header!.id).not.toBe(session.piSessionId);
    const roles = entries
      .filter((e) => e.type === "message")
      .map((e) => (e.message as { role: string }).role);
    expect(roles).toEqual(["system", "user", "assistant"]);

    // Registered with the public messages as history and the first user message as preview.
    expect(registered).toHaveLength(1);
    expect(registered[0]!.created).toMatchObject({ origin: "fork", firstMessage: "first" });
    expect(registered[0]!.created.parentSessionId).toBeUndefined();
    expect(transcript(registered[0]!.created.messages)).toEqual(["user:first", "assistant:answer one"]);
    expect(JSON.stringify(registered[0]!.created)).not.toContain(dirs.root);

    // The source session and its file are untouched.
    expect(transcript(session.messages())).toEqual([
      "user:first",
      "assistant:answer one",
      "user:second",
      "assistant:answer two",
    ]);
    expect(await readFile(dirs.sessionFile, "utf8")).toBe(before);

    // The fork opens with the branch as its context, and a prompt continues it in its own file.
    const forked = await ctx.open(file);
    expect(transcript(forked.messages())).toEqual(["user:first", "assistant:answer one"]);
    ctx.faux.setResponses([fauxAssistantMessage("answer two, again")]);
    expect(await forked.run("second, edited", {}, () => {})).toMatchObject({ status: "finished" });
    expect(transcript(forked.messages())).toEqual([
      "user:first",
      "assistant:answer one",
      "user:second, edited",
      "assistant:answer two, again",
    ]);
    const lines = await records(file);
    expect(lines.filter((e) => e.type === "session")).toHaveLength(1);
    expect(await readFile(dirs.sessionFile, "utf8")).toBe(before);
  });

  it("forking at the first user message gives a session without messages, the source as parent", async () => {
    const ctx = await setup();
    await twoExchanges(ctx);
    const entryId = await forkEntry(ctx.session, "first");
    expect(await data(ctx.session, { type: "fork", entryId }, ctx.files)).toEqual({
      text: "first",
      cancelled: false,
      sessionId: "s2",
    });
    const file = join(dirname(ctx.dirs.sessionFile), "s2.jsonl");
    // pi's branch before the first user message: the entries that precede it (model and thinking
    // level changes, the system message), no conversation.
    const [head, ...entries] = await records(file);
    expect(head).toMatchObject({ type: "session", parentSession: ctx.dirs.sessionFile });
    expect(entries.map((e) => e.type)).toEqual(["model_change", "thinking_level_change", "message"]);
    expect(entries[2]).toMatchObject({ message: { role: "system" } });
    expect(ctx.registered[0]!.created).toEqual({ origin: "fork", messages: [] });
    const forked = await ctx.open(file);
    expect(forked.messages()).toEqual([]);
    ctx.faux.setResponses([fauxAssistantMessage("fresh")]);
    expect(await forked.run("again", {}, () => {})).toMatchObject({ status: "finished" });
    const [header, ...rest] = await records(file);
    expect(header).toMatchObject({ parentSession: ctx.dirs.sessionFile });
    expect(rest.some((e) => e.type === "message")).toBe(true);
  });

  it("answers pi's error for an unknown entry or one that is not a user message", async () => {
    const ctx = await setup();
    await twoExchanges(ctx);
    const { entries } = (await data(ctx.session, { type: "get_entries" })) as {
      entries: { id: string; type: string; message?: { role: string } }[];
    };
    const assistant = entries.find((e) => e.message?.role === "assistant")!;
    for (const entryId of ["nope", "", assistant.id]) {
      expect(await ctx.session.command({ type: "fork", entryId }, ctx.files)).toEqual({
        success: false,
        code: "invalid",
        error: "Invalid entry ID for forking",
      });
    }
    expect(await ctx.session.command({ type: "fork" }, ctx.files)).toMatchObject({ code: "invalid" });
    expect(ctx.registered).toEqual([]);
  });

  it("removes the written file when registration fails", async () => {
    const ctx = await setup();
    await twoExchanges(ctx);
    const { files } = memoryFiles(dirname(ctx.dirs.sessionFile), { failRegister: true });
    const result = await ctx.session.command({ type: "clone" }, files);
    expect(result).toEqual({ success: false, error: "registry unavailable" });
    await expect(readFile(join(dirname(ctx.dirs.sessionFile), "s2.jsonl"))).rejects.toThrow(/ENOENT/);
  });
});

describe("clone", () => {
  it("copies the current branch up to the leaf into a new session", async () => {
    const ctx = await setup();
    await twoExchanges(ctx);
    expect(await data(ctx.session, { type: "clone" }, ctx.files)).toEqual({
      cancelled: false,
      sessionId: "s2",
    });
    const file = join(dirname(ctx.dirs.sessionFile), "s2.jsonl");
    const [header] = await records(file);
    expect(header).toMatchObject({ parentSession: ctx.dirs.sessionFile });
    expect(ctx.registered[0]!.created).toMatchObject({ origin: "clone", firstMessage: "first" });
    expect(ctx.registered[0]!.created.messages).toEqual(ctx.session.messages());
    const cloned = await ctx.open(file);
    expect(cloned.messages()).toEqual(ctx.session.messages());
    expect(cloned.piSessionId).not.toBe(ctx.session.piSessionId);
  });

  it("carries pi's session name along the branch", async () => {
    const ctx = await setup();
    await twoExchanges(ctx);
    await data(ctx.session, { type: "set_session_name", name: "named" });
    await data(ctx.session, { type: "clone" }, ctx.files);
    expect(ctx.registered[0]!.created.piSessionName).toBe("named");
    const cloned = await ctx.open(join(dirname(ctx.dirs.sessionFile), "s2.jsonl"));
    expect(await data(cloned, { type: "get_state" })).toMatchObject({ sessionName: "named" });
  });

  it("answers pi's error for a session without a saved answer", async () => {
    // A new session already has entries (model and thinking level), so pi's "Cannot clone
    // session: no current entry selected" cannot happen here: the file check comes first.
    const ctx = await setup();
    expect(await ctx.session.command({ type: "clone" }, ctx.files)).toEqual({
      success: false,
      error:
        "This session has not been saved yet. Wait for the first assistant response before cloning or forking it.",
    });
    expect(ctx.registered).toEqual([]);
  });
});

describe("new_session", () => {
  it("creates an empty session, with a fleet session id as parent, never a path", async () => {
    const ctx = await setup();
    await twoExchanges(ctx);
    const dir = dirname(ctx.dirs.sessionFile);
    expect(await data(ctx.session, { type: "new_session" }, ctx.files)).toEqual({
      cancelled: false,
      sessionId: "s2",
    });
    const [plain, ...none] = await records(join(dir, "s2.jsonl"));
    expect(none).toEqual([]);
    expect(plain).toMatchObject({ type: "session", cwd: ctx.dirs.projectDir });
    expect(plain).not.toHaveProperty("parentSession");
    expect(ctx.registered[0]!.created).toEqual({ origin: "new_session", messages: [] });

    expect(await data(ctx.session, { type: "new_session", parentSession: "s1" }, ctx.files)).toEqual({
      cancelled: false,
      sessionId: "s3",
    });
    const [child] = await records(join(dir, "s3.jsonl"));
    expect(child).toMatchObject({ parentSession: ctx.dirs.sessionFile });
    expect(ctx.registered[1]!.created).toEqual({
      origin: "new_session",
      parentSessionId: "s1",
      messages: [],
    });
    const opened = await ctx.open(join(dir, "s3.jsonl"));
    expect(opened.messages()).toEqual([]);
    // The new session answers get_state with the id new_session named, not a pi id.
    expect(await data(opened, { type: "get_state" })).toMatchObject({ sessionId: "s3" });

    expect(
      await ctx.session.command({ type: "new_session", parentSession: ctx.dirs.sessionFile }, ctx.files),
    ).toMatchObject({ success: false, code: "invalid" });
    expect(await ctx.session.command({ type: "new_session", parentSession: "nope" }, ctx.files)).toEqual({
      success: false,
      code: "invalid",
      error: "Session not found: nope",
    });
    expect(ctx.registered).toHaveLength(2);
  });
});

describe("refusals", () => {
  it("refuses fork, clone, new_session and export_html during a run without disturbing it", async () => {
    const ctx = await setup({ tokensPerSecond: 100 });
    await twoExchanges(ctx);
    const entryId = await forkEntry(ctx.session, "second");
    ctx.faux.setResponses([fauxAssistantMessage("word ".repeat(30))]);
    const { sink, waitFor } = recordingSink();
    const running = ctx.session.run("talk", {}, sink);
    await waitFor((e) => e.type === "message_update");
    for (const request of [
      { type: "fork", entryId },
      { type: "clone" },
      { type: "new_session" },
      { type: "export_html" },
    ]) {
      expect(await ctx.session.command(request, ctx.files)).toEqual({
        success: false,
        code: "busy",
        error: `${request.type} is not allowed while a run is active`,
      });
    }
    expect(await running).toMatchObject({ status: "finished", stopReason: "stop" });
    expect(ctx.registered).toEqual([]);
  });

  it("refuses switch_session, and session creation without SessionFiles", async () => {
    const ctx = await setup();
    await twoExchanges(ctx);
    const switched = await ctx.session.command(
      { type: "switch_session", sessionPath: ctx.dirs.sessionFile },
      ctx.files,
    );
    expect(switched).toMatchObject({ success: false, code: "unsupported" });
    expect((switched as { error: string }).error).toMatch(/session's id .*URL|URL/);
    for (const type of ["fork", "clone", "new_session"]) {
      expect(await ctx.session.command({ type, entryId: "x" })).toMatchObject({
        success: false,
        code: "unsupported",
      });
    }
  });

  it("lets an extension cancel a fork or a new session, as in pi", async () => {
    const dirs = await sessionDirs();
    const ext = join(await tempDir(), "cancel.ts");
    await writeFile(
      ext,
      `export default function (pi) {
         pi.on("session_before_fork", () => ({ cancel: true }));
         pi.on("session_before_switch", () => ({ cancel: true }));
       }\n`,
    );
    const { runtime, faux } = await fauxRuntime();
    const session = await openSession({ runtime, ...dirs, extensionPaths: [ext] });
    onCleanup(() => session.dispose());
    faux.setResponses([fauxAssistantMessage("answer")]);
    await session.run("first", {}, () => {});
    const { files, registered } = memoryFiles(dirname(dirs.sessionFile));
    const entryId = await forkEntry(session, "first");
    expect(await data(session, { type: "fork", entryId }, files)).toEqual({ cancelled: true });
    expect(await data(session, { type: "clone" }, files)).toEqual({ cancelled: true });
    expect(await data(session, { type: "new_session" }, files)).toEqual({ cancelled: true });
    expect(registered).toEqual([]);
  });
});

/** The session data embedded in pi's exported page. */
function embedded(html: string): Record<string, unknown> {
  const match = /<script id="session-data" type="application\/json">([A-Za-z0-9+/=]*)<\/script>/.exec(html);
  if (!match) throw new Error("no session data");
  return JSON.parse(Buffer.from(match[1]!, "base64").toString("utf8")) as Record<string, unknown>;
}

describe("export_html", () => {
  async function exported(ctx: Awaited<ReturnType<typeof setup>>, dirs: Dirs) {
    const { html } = (await data(ctx.session, { type: "export_html" })) as { html: string };
    expect(html).toMatch(/^<!DOCTYPE html>/i);
    expect(html).not.toContain(dirs.root);
    const session = embedded(html);
    expect(JSON.stringify(session)).not.toContain(dirs.root);
    return { html, session };
  }

  it("returns pi's HTML page of the conversation without server paths", async () => {
    const ctx = await setup();
    await twoExchanges(ctx);
    const { html, session } = await exported(ctx, ctx.dirs);
    expect(session.header).toEqual({
      type: "session",
      version: 3,
      id: "s1", // the fleet id, not pi's header id
      timestamp: expect.any(String),
    });
    expect(html).not.toContain(ctx.session.piSessionId);
    expect(session).not.toHaveProperty("systemPrompt");
    const text = JSON.stringify(session.entries);
    for (const said of ["first", "answer one", "second", "answer two"]) expect(text).toContain(said);
    expect(session.leafId).toEqual(expect.any(String));
    expect(Array.isArray(session.tools)).toBe(true);
  });

  it("keeps a fork's parent out of the page", async () => {
    const ctx = await setup();
    await twoExchanges(ctx);
    await data(ctx.session, { type: "clone" }, ctx.files);
    const cloned = await ctx.open(join(dirname(ctx.dirs.sessionFile), "s2.jsonl"));
    const { html } = (await data(cloned, { type: "export_html" })) as { html: string };
    expect(html).not.toContain(ctx.dirs.root);
    expect(embedded(html).header).not.toHaveProperty("parentSession");
  });

  it("refuses an outputPath and answers pi's error before the first answer", async () => {
    const ctx = await setup();
    expect(await ctx.session.command({ type: "export_html", outputPath: "/tmp/x.html" })).toMatchObject({
      success: false,
      code: "invalid",
    });
    expect(await ctx.session.command({ type: "export_html" })).toEqual({
      success: false,
      error: "Nothing to export yet - start a conversation first",
    });
  });
});
