// Extension UI through openSession with the faux provider: the permission-gate fixture's confirm
// dialog reaches the host (answer, refusal, timeout default, abort), fire-and-forget calls arrive
// as extension_ui_request events, extension errors as extension_error events; plus the UI context
// on its own (every dialog's parsing and defaults, the wire shapes, the terminal-only no-ops).
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fauxAssistantMessage, fauxText, fauxToolCall } from "@earendil-works/pi-ai";
import type { WireEvent } from "@pi-fleet/contracts";
import { describe, expect, it } from "vitest";
import {
  createExtensionUiContext,
  type ExtensionUiHost,
  openSession,
  type UiAnswer,
  type UiRequest,
} from "../src/index.ts";
import { fauxRuntime, onCleanup, recordingSink, sessionDirs, tempDir } from "./helpers.ts";

const GATE = fileURLToPath(new URL("../../../test/fixtures/extensions/permission-gate.ts", import.meta.url));
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Asked {
  request: UiRequest;
  signal: AbortSignal;
}

/**
 * A host recording dialogs and notifications. `answer` decides each dialog's answer; when it
 * returns "wait", the dialog stays open until its signal aborts (then it resolves undefined).
 */
function testHost(answer: (r: UiRequest) => UiAnswer | undefined | "wait") {
  const asked: Asked[] = [];
  const notes: WireEvent[] = [];
  const waiters: ((a: Asked) => void)[] = [];
  const host: ExtensionUiHost = {
    request(request, signal) {
      const entry = { request, signal };
      asked.push(entry);
      for (const w of waiters.splice(0)) w(entry);
      const a = answer(request);
      if (a !== "wait") return Promise.resolve(a);
      return new Promise((resolve) => signal.addEventListener("abort", () => resolve(undefined)));
    },
    notify: (e) => notes.push(e),
  };
  const nextRequest = () =>
    asked.length > 0 ? Promise.resolve(asked[0]!) : new Promise<Asked>((r) => waiters.push(r));
  return { host, asked, notes, nextRequest };
}

/** A gated session whose faux model calls bash with `command`, then says "done". */
async function gatedSession(command: string, ui: ExtensionUiHost | undefined) {
  const dirs = await sessionDirs();
  const { runtime, faux } = await fauxRuntime();
  faux.setResponses([
    fauxAssistantMessage([fauxText("running"), fauxToolCall("bash", { command })], { stopReason: "toolUse" }),
    fauxAssistantMessage("done"),
  ]);
  const session = await openSession({ runtime, ...dirs, extensionPaths: [GATE], ...(ui ? { ui } : {}) });
  onCleanup(() => session.dispose());
  return { session, dirs };
}

function toolEnd(events: WireEvent[]): { isError?: boolean; result?: unknown } | undefined {
  return events.find((e) => e.type === "tool_execution_end") as { isError?: boolean } | undefined;
}

describe("extension UI through openSession", () => {
  it("asks confirm before bash; a confirmed answer lets the command run and notify reports it", async () => {
    const t = testHost(() => ({ confirmed: true }));
    const { session, dirs } = await gatedSession("echo ok > gate.txt", t.host);
    const { events, sink } = recordingSink();

    const outcome = await session.run("go", {}, sink);

    expect(outcome.status).toBe("finished");
    expect(t.asked).toHaveLength(1);
    const { request } = t.asked[0]!;
    expect(request).toEqual({
      type: "extension_ui_request",
      id: expect.stringMatching(UUID),
      method: "confirm",
      title: "Run bash?",
      message: "echo ok > gate.txt",
    });
    expect(existsSync(join(dirs.projectDir, "gate.txt"))).toBe(true);
    expect(toolEnd(events)?.isError).toBe(false);
    expect(t.notes).toEqual([
      {
        type: "extension_ui_request",
        id: expect.stringMatching(UUID),
        method: "notify",
        message: "bash allowed: echo ok > gate.txt",
        notifyType: "info",
      },
    ]);
  });

  it("blocks the tool call when the answer is not a confirmation (false, cancelled, or a value)", async () => {
    for (const answer of [{ confirmed: false }, { cancelled: true }, { value: "yes" }] as UiAnswer[]) {
      const t = testHost(() => answer);
      const { session, dirs } = await gatedSession("echo ok > gate.txt", t.host);
      const { events, sink } = recordingSink();
      expect((await session.run("go", {}, sink)).status).toBe("finished");
      expect(existsSync(join(dirs.projectDir, "gate.txt"))).toBe(false);
      expect(toolEnd(events)?.isError).toBe(true);
      expect(JSON.stringify(toolEnd(events)?.result)).toContain("Blocked by user");
      expect(t.notes[0]).toMatchObject({ method: "notify", notifyType: "warning" });
    }
  });

  it("resolves an unanswered dialog to pi's default (false) after its timeout and withdraws it", async () => {
    const t = testHost(() => "wait");
    const { session, dirs } = await gatedSession("echo ok > gate.txt # gate-timeout=80", t.host);
    const { sink } = recordingSink();
    const started = performance.now();

    expect((await session.run("go", {}, sink)).status).toBe("finished");

    expect(performance.now() - started).toBeGreaterThanOrEqual(70);
    expect(t.asked[0]!.request.timeout).toBe(80);
    expect(t.asked[0]!.signal.aborted).toBe(true);
    expect(t.asked[0]!.signal.reason).toBe("timeout");
    expect(existsSync(join(dirs.projectDir, "gate.txt"))).toBe(false);
  });

  it("dismisses a pending dialog when the run is aborted (the extension's signal)", async () => {
    const t = testHost(() => "wait");
    const { session, dirs } = await gatedSession("echo ok > gate.txt", t.host);
    const { sink } = recordingSink();
    const run = session.run("go", {}, sink);
    const { signal } = await t.nextRequest();

    await session.abort();

    expect((await run).status).toBe("aborted");
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBe("aborted");
    expect(existsSync(join(dirs.projectDir, "gate.txt"))).toBe(false);
  });

  it("gives the default when the host rejects, and without a host extensions see no UI", async () => {
    const failing: ExtensionUiHost = {
      request: () => Promise.reject(new Error("redis down")),
      notify: () => {},
    };
    const a = await gatedSession("echo ok > a.txt", failing);
    expect((await a.session.run("go", {}, recordingSink().sink)).status).toBe("finished");
    expect(existsSync(join(a.dirs.projectDir, "a.txt"))).toBe(false);

    const b = await gatedSession("echo ok > b.txt", undefined);
    const { events, sink } = recordingSink();
    expect((await b.session.run("go", {}, sink)).status).toBe("finished");
    expect(existsSync(join(b.dirs.projectDir, "b.txt"))).toBe(false);
    expect(JSON.stringify(toolEnd(events)?.result)).toContain("no UI to confirm");
  });

  it("reports extension errors as extension_error events without server paths", async () => {
    const extDir = await tempDir("pf-ext-");
    const broken = join(extDir, "broken.ts");
    await writeFile(
      broken,
      `export default function (pi) {
        pi.on("session_start", () => { throw new Error("boom at start"); });
        pi.on("agent_start", () => { throw new Error("boom in agent_start"); });
      }\n`,
    );
    const dirs = await sessionDirs();
    const { runtime, faux } = await fauxRuntime();
    faux.setResponses([
      fauxAssistantMessage([fauxToolCall("bash", { command: "true" })], { stopReason: "toolUse" }),
      fauxAssistantMessage("done"),
    ]);
    const t = testHost(() => undefined);
    const session = await openSession({ runtime, ...dirs, extensionPaths: [broken], ui: t.host });
    onCleanup(() => session.dispose());
    expect(t.notes).toEqual([
      { type: "extension_error", extensionPath: "broken.ts", event: "session_start", error: "boom at start" },
    ]);
    await session.run("go", {}, recordingSink().sink);
    expect(t.notes[1]).toMatchObject({
      type: "extension_error",
      extensionPath: "broken.ts",
      event: "agent_start",
    });
    expect(JSON.stringify(t.notes)).not.toContain(extDir);
  });

  it("refuses to open a session when an operator extension is missing (fail closed)", async () => {
    const dirs = await sessionDirs();
    const { runtime } = await fauxRuntime();
    await expect(
      openSession({ runtime, ...dirs, extensionPaths: [join(dirs.root, "missing-gate.ts")] }),
    ).rejects.toThrow(/Operator extension missing-gate\.ts did not load/);
    await expect(openSession({ runtime, ...dirs, extensionPaths: ["relative/gate.ts"] })).rejects.toThrow(
      TypeError,
    );
  });
});

describe("createExtensionUiContext", () => {
  it("parses dialog answers as pi's RPC mode does and falls back to the defaults", async () => {
    let next: UiAnswer | undefined;
    const t = testHost(() => next);
    const ui = createExtensionUiContext(t.host);

    next = { value: "b" };
    expect(await ui.select("Pick", ["a", "b"], { timeout: 500 })).toBe("b");
    next = { cancelled: true };
    expect(await ui.select("Pick", ["a", "b"])).toBeUndefined();
    next = { confirmed: true };
    expect(await ui.select("Pick", ["a"])).toBeUndefined();
    next = { value: "typed" };
    expect(await ui.input("Name", "placeholder")).toBe("typed");
    next = { value: "edited" };
    expect(await ui.editor("Edit", "prefill")).toBe("edited");
    next = undefined;
    expect(await ui.editor("Edit")).toBeUndefined();
    next = { confirmed: true };
    expect(await ui.confirm("Sure?", "really")).toBe(true);
    next = { value: "yes" };
    expect(await ui.confirm("Sure?", "really")).toBe(false);

    expect(t.asked.map((a) => a.request)).toEqual([
      {
        type: "extension_ui_request",
        id: expect.any(String),
        method: "select",
        title: "Pick",
        options: ["a", "b"],
        timeout: 500,
      },
      {
        type: "extension_ui_request",
        id: expect.any(String),
        method: "select",
        title: "Pick",
        options: ["a", "b"],
      },
      {
        type: "extension_ui_request",
        id: expect.any(String),
        method: "select",
        title: "Pick",
        options: ["a"],
      },
      {
        type: "extension_ui_request",
        id: expect.any(String),
        method: "input",
        title: "Name",
        placeholder: "placeholder",
      },
      {
        type: "extension_ui_request",
        id: expect.any(String),
        method: "editor",
        title: "Edit",
        prefill: "prefill",
      },
      { type: "extension_ui_request", id: expect.any(String), method: "editor", title: "Edit" },
      {
        type: "extension_ui_request",
        id: expect.any(String),
        method: "confirm",
        title: "Sure?",
        message: "really",
      },
      {
        type: "extension_ui_request",
        id: expect.any(String),
        method: "confirm",
        title: "Sure?",
        message: "really",
      },
    ]);
    expect(new Set(t.asked.map((a) => a.request.id)).size).toBe(t.asked.length);
  });

  it("answers an already aborted dialog with the default without asking; a late answer is ignored", async () => {
    const t = testHost(() => "wait");
    const ui = createExtensionUiContext(t.host);
    const aborted = AbortSignal.abort();
    expect(await ui.confirm("Sure?", "x", { signal: aborted })).toBe(false);
    expect(await ui.input("Name", undefined, { signal: aborted })).toBeUndefined();
    expect(t.asked).toHaveLength(0);

    const controller = new AbortController();
    const pending = ui.select("Pick", ["a"], { signal: controller.signal });
    controller.abort();
    expect(await pending).toBeUndefined();
    expect(t.asked[0]!.signal.aborted).toBe(true);

    // The host answers after the timeout already settled the dialog: the default stands.
    let answerLate: ((a: UiAnswer) => void) | undefined;
    const late: ExtensionUiHost = {
      request: () => new Promise((resolve) => (answerLate = resolve)),
      notify: () => {},
    };
    const result = createExtensionUiContext(late).confirm("Sure?", "x", { timeout: 20 });
    await new Promise((r) => setTimeout(r, 40));
    answerLate?.({ confirmed: true });
    expect(await result).toBe(false);
  });

  it("forwards fire-and-forget calls in pi's RPC wire shapes and keeps terminal-only calls local", async () => {
    const t = testHost(() => undefined);
    const ui = createExtensionUiContext(t.host);
    ui.notify("hello");
    ui.notify("careful", "warning");
    ui.setStatus("build", "green");
    ui.setStatus("build", undefined);
    ui.setWidget("todo", ["one", "two"], { placement: "belowEditor" });
    ui.setWidget("todo", undefined);
    ui.setWidget("fancy", () => ({ render: () => [], invalidate: () => {} }));
    ui.setTitle("pi");
    ui.setEditorText("draft");
    ui.pasteToEditor("pasted");
    const strip = ({ id: _id, ...rest }: WireEvent) => rest;
    expect(t.notes.map(strip)).toEqual([
      { type: "extension_ui_request", method: "notify", message: "hello" },
      { type: "extension_ui_request", method: "notify", message: "careful", notifyType: "warning" },
      { type: "extension_ui_request", method: "setStatus", statusKey: "build", statusText: "green" },
      { type: "extension_ui_request", method: "setStatus", statusKey: "build" },
      {
        type: "extension_ui_request",
        method: "setWidget",
        widgetKey: "todo",
        widgetLines: ["one", "two"],
        widgetPlacement: "belowEditor",
      },
      { type: "extension_ui_request", method: "setWidget", widgetKey: "todo" },
      { type: "extension_ui_request", method: "setTitle", title: "pi" },
      { type: "extension_ui_request", method: "set_editor_text", text: "draft" },
      { type: "extension_ui_request", method: "set_editor_text", text: "pasted" },
    ]);
    expect(t.notes.every((n) => UUID.test(String(n.id)))).toBe(true);

    expect(ui.getEditorText()).toBe("");
    expect(ui.getToolsExpanded()).toBe(false);
    expect(ui.getAllThemes()).toEqual([]);
    expect(ui.getTheme("dark")).toBeUndefined();
    expect(ui.setTheme("dark")).toEqual({
      success: false,
      error: "Theme switching not supported in RPC mode",
    });
    expect(ui.getEditorComponent()).toBeUndefined();
    expect(ui.theme.fg("accent", "plain")).toBe("plain");
    expect(ui.theme.bold("plain")).toBe("plain");
    expect(await ui.custom(() => ({ render: () => [], invalidate: () => {} }))).toBeUndefined();
    const off = ui.onTerminalInput(() => undefined);
    off();
    ui.setWorkingMessage("x");
    ui.setWorkingVisible(false);
    ui.setWorkingIndicator({ frames: [] });
    ui.setHiddenThinkingLabel("x");
    ui.setFooter(undefined);
    ui.setHeader(undefined);
    ui.addAutocompleteProvider((p) => p);
    ui.setEditorComponent(undefined);
    ui.setToolsExpanded(true);
    expect(t.notes).toHaveLength(9);
    expect(t.asked).toHaveLength(0);
  });

  it("survives a host whose notify throws", () => {
    const ui = createExtensionUiContext({
      request: () => Promise.resolve(undefined),
      notify: () => {
        throw new Error("broken host");
      },
    });
    expect(() => ui.notify("x")).not.toThrow();
  });
});

describe("project extensions", () => {
  it("never loads a project's .pi/extensions unless the org is trusted", async () => {
    const dirs = await sessionDirs();
    const { runtime } = await fauxRuntime();
    const marker = join(dirs.root, "evil-loaded");
    await mkdir(join(dirs.projectDir, ".pi", "extensions"), { recursive: true });
    await writeFile(
      join(dirs.projectDir, ".pi", "extensions", "evil.ts"),
      `import { writeFileSync } from "node:fs";
       export default function () { writeFileSync(${JSON.stringify(marker)}, "loaded"); }\n`,
    );
    const untrusted = await openSession({ runtime, ...dirs });
    await untrusted.dispose();
    const operatorOnly = await openSession({ runtime, ...dirs, extensionPaths: [GATE] });
    await operatorOnly.dispose();
    expect(existsSync(marker)).toBe(false);

    const trusted = await openSession({ runtime, ...dirs, trustProjectExtensions: true });
    onCleanup(() => trusted.dispose());
    expect(existsSync(marker)).toBe(true);
  });

  it("reports a trusted project extension that fails to load, and opens the session anyway", async () => {
    const dirs = await sessionDirs();
    const { runtime } = await fauxRuntime();
    await mkdir(join(dirs.projectDir, ".pi", "extensions"), { recursive: true });
    await writeFile(join(dirs.projectDir, ".pi", "extensions", "bad.ts"), "export default 42;\n");
    const t = testHost(() => undefined);
    const session = await openSession({ runtime, ...dirs, trustProjectExtensions: true, ui: t.host });
    onCleanup(() => session.dispose());
    expect(t.notes).toEqual([
      {
        type: "extension_error",
        extensionPath: ".pi/extensions/bad.ts",
        event: "load",
        error: expect.stringContaining("does not export a valid factory function"),
      },
    ]);
  });
});
