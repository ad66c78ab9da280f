// Extension UI for remote clients: pi's ExtensionUIContext implemented over a fleet-side host, with
// the semantics of pi's own RPC mode (pi-sdk.md §6). Dialogs get a random UUID and go to
// `host.request`; a timeout or the extension's abort signal resolves them to pi's defaults
// (`undefined`, `false` for confirm). Fire-and-forget calls become `extension_ui_request` events in
// pi's RPC wire shapes. Terminal-only calls are no-ops. Nothing here throws into an extension.
import { randomUUID } from "node:crypto";
import {
  type ExtensionError,
  type ExtensionUIContext,
  type ExtensionUIDialogOptions,
  type ExtensionWidgetOptions,
  Theme,
} from "@earendil-works/pi-coding-agent";
import type { WireEvent } from "@pi-fleet/contracts";
import type { ExtensionUiHost, UiAnswer, UiDialogMethod, UiRequest } from "./types.ts";

/**
 * pi's ExtensionUIContext over `host`. Dialog answers are parsed as pi's RPC mode does: select,
 * input and editor take a string `value` (`cancelled` or anything else → undefined); confirm takes
 * a boolean `confirmed` (`cancelled` or anything else → false). A host that rejects or resolves
 * `undefined` yields the default as well.
 */
export function createExtensionUiContext(host: ExtensionUiHost): ExtensionUIContext {
  const emit = (method: string, fields: Record<string, unknown>): void => {
    const event: WireEvent = { type: "extension_ui_request", id: randomUUID(), method, ...defined(fields) };
    try {
      host.notify(event);
    } catch {
      // The host must not throw; if it does, the extension still must not see it.
    }
  };
  const ui: ExtensionUIContext = {
    select: (title: string, options: string[], opts?: ExtensionUIDialogOptions) =>
      dialog<string | undefined>(
        host,
        "select",
        { title, options, timeout: opts?.timeout },
        opts,
        undefined,
        stringValue,
      ),
    confirm: (title: string, message: string, opts?: ExtensionUIDialogOptions) =>
      dialog(host, "confirm", { title, message, timeout: opts?.timeout }, opts, false, confirmedValue),
    input: (title: string, placeholder?: string, opts?: ExtensionUIDialogOptions) =>
      dialog<string | undefined>(
        host,
        "input",
        { title, placeholder, timeout: opts?.timeout },
        opts,
        undefined,
        stringValue,
      ),
    // pi's editor dialog takes no options: it waits until answered (or the host cancels it).
    editor: (title: string, prefill?: string) =>
      dialog<string | undefined>(host, "editor", { title, prefill }, undefined, undefined, stringValue),
    notify: (message: string, type?: "info" | "warning" | "error") =>
      emit("notify", { message, notifyType: type }),
    setStatus: (key: string, text: string | undefined) =>
      emit("setStatus", { statusKey: key, statusText: text }),
    setWidget: (key: string, content: unknown, options?: ExtensionWidgetOptions) => {
      // Only string lines travel; component factories need a terminal (pi's RPC mode ignores them too).
      if (content !== undefined && !Array.isArray(content)) return;
      emit("setWidget", { widgetKey: key, widgetLines: content, widgetPlacement: options?.placement });
    },
    setTitle: (title: string) => emit("setTitle", { title }),
    setEditorText: (text: string) => emit("set_editor_text", { text }),
    // pi's RPC mode: paste falls back to setting the editor text.
    pasteToEditor: (text: string) => emit("set_editor_text", { text }),
    // Synchronous: a remote editor cannot be read; pi's RPC mode answers "" as well.
    getEditorText: () => "",
    onTerminalInput: () => () => {},
    setWorkingMessage: () => {},
    setWorkingVisible: () => {},
    setWorkingIndicator: () => {},
    setHiddenThinkingLabel: () => {},
    setFooter: () => {},
    setHeader: () => {},
    // Custom components need a terminal: resolve at once, as pi's RPC mode does (with undefined).
    custom: <T>() => Promise.resolve(undefined as T),
    addAutocompleteProvider: () => {},
    setEditorComponent: () => {},
    getEditorComponent: () => undefined,
    get theme(): Theme {
      return plainTheme();
    },
    getAllThemes: () => [],
    getTheme: () => undefined,
    setTheme: () => ({ success: false, error: "Theme switching not supported in RPC mode" }),
    getToolsExpanded: () => false,
    setToolsExpanded: () => {},
  };
  return ui;
}

/**
 * The `extension_error` wire event for an error pi reports from an extension handler (pi's RPC
 * shape `{type, extensionPath, event, error}`; the stack is dropped). `extensionPath` is shown
 * relative to `projectDir` for project extensions and as the file name otherwise, and the project
 * dir is cut out of the message, so the workspace layout does not reach clients.
 */
export function extensionErrorEvent(err: ExtensionError, projectDir: string): WireEvent {
  return {
    type: "extension_error",
    extensionPath: publicExtensionPath(err.extensionPath, projectDir),
    event: err.event,
    error: withoutProjectDir(err.error, projectDir),
  };
}

/** An extension path without server directories: project-relative, or the base name. */
export function publicExtensionPath(path: string, projectDir: string): string {
  if (path.startsWith("<")) return path; // inline factories: "<inline:name>"
  const root = projectDir.endsWith("/") ? projectDir : `${projectDir}/`;
  if (path.startsWith(root)) return path.slice(root.length);
  return path.slice(path.lastIndexOf("/") + 1);
}

/** `text` with every `<projectDir>/` prefix removed (paths become project-relative). */
export function withoutProjectDir(text: string, projectDir: string): string {
  const root = projectDir.endsWith("/") ? projectDir : `${projectDir}/`;
  return text.split(root).join("");
}

/**
 * One dialog with pi's RPC-mode semantics: an already-aborted signal resolves the default at once
 * without asking; otherwise the request goes to the host and the first of (answer, timeout,
 * extension abort) settles the dialog. On timeout or abort the host's signal is aborted, so it can
 * withdraw the request (its late answer is ignored).
 */
function dialog<T>(
  host: ExtensionUiHost,
  method: UiDialogMethod,
  fields: Record<string, unknown>,
  opts: ExtensionUIDialogOptions | undefined,
  defaultValue: T,
  parse: (answer: UiAnswer, defaultValue: T) => T,
): Promise<T> {
  if (opts?.signal?.aborted) return Promise.resolve(defaultValue);
  const request: UiRequest = { type: "extension_ui_request", id: randomUUID(), method, ...defined(fields) };
  const withdraw = new AbortController();
  return new Promise<T>((resolve) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const settle = (value: T): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts?.signal?.removeEventListener("abort", onAbort);
      resolve(value);
    };
    const dismiss = (reason: "timeout" | "aborted"): void => {
      if (settled) return;
      settle(defaultValue);
      withdraw.abort(reason);
    };
    const onAbort = () => dismiss("aborted");
    opts?.signal?.addEventListener("abort", onAbort, { once: true });
    // pi: a timeout of 0 (or none) means the dialog waits until answered.
    if (opts?.timeout) timer = setTimeout(() => dismiss("timeout"), opts.timeout);
    let answered: Promise<UiAnswer | undefined>;
    try {
      answered = host.request(request, withdraw.signal);
    } catch (err) {
      answered = Promise.reject(err);
    }
    answered.then(
      (answer) => settle(answer === undefined ? defaultValue : parse(answer, defaultValue)),
      () => settle(defaultValue),
    );
  });
}

/** select / input / editor: a string `value`, anything else (cancelled included) → the default. */
function stringValue(answer: UiAnswer, defaultValue: string | undefined): string | undefined {
  if ("cancelled" in answer && answer.cancelled) return defaultValue;
  return "value" in answer && typeof answer.value === "string" ? answer.value : defaultValue;
}

/** confirm: a boolean `confirmed`, anything else (cancelled included) → false. */
function confirmedValue(answer: UiAnswer, defaultValue: boolean): boolean {
  if ("cancelled" in answer && answer.cancelled) return defaultValue;
  return "confirmed" in answer && typeof answer.confirmed === "boolean" ? answer.confirmed : defaultValue;
}

/** `fields` without undefined values (pi's JSON lines drop them too). */
function defined(fields: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
}

/**
 * A theme whose styling functions return text unchanged: remote clients get plain strings, never
 * ANSI escapes. pi's RPC mode hands out the process-global terminal theme instead, which needs
 * initTheme() (process-global state this package never touches).
 */
class PlainTheme extends Theme {
  constructor() {
    // Only the colours without fallbacks need values; every lookup is overridden below.
    const fg = { scrollbarTrack: "", scrollbarThumb: "", thinkingMax: "", searchMatchText: "" };
    super(
      fg as unknown as ConstructorParameters<typeof Theme>[0],
      { searchMatchBg: "" } as unknown as ConstructorParameters<typeof Theme>[1],
      "256color",
      { name: "plain" },
    );
  }
  override fg(_color: string, text: string): string {
    return text;
  }
  override bg(_color: string, text: string): string {
    return text;
  }
  override bold(text: string): string {
    return text;
  }
  override italic(text: string): string {
    return text;
  }
  override underline(text: string): string {
    return text;
  }
  override inverse(text: string): string {
    return text;
  }
  override strikethrough(text: string): string {
    return text;
  }
  override getFgAnsi(): string {
    return "";
  }
  override getBgAnsi(): string {
    return "";
  }
}

let plain: PlainTheme | undefined;

function plainTheme(): PlainTheme {
  plain ??= new PlainTheme();
  return plain;
}
