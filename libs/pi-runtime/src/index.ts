// Public API of @pi-fleet/pi-runtime, the only package that imports pi: per-org model runtimes,
// isolated agent sessions, and the lean wire form of pi's events.
export { PiRuntimeError, type PiRuntimeErrorCode } from "./errors.ts";
export { createExtensionUiContext } from "./extension-ui.ts";
export { listBuiltinModels } from "./model-rows.ts";
export { openSession } from "./open-session.ts";
export { KEYLESS_PLACEHOLDER_KEY, registerNativeProviderForTests } from "./org-runtime.ts";
export { preparePiProcess } from "./pi-process.ts";
export { AGENTS_FILE_MAX_BYTES } from "./project-context.ts";
export { RuntimeCache } from "./runtime-cache.ts";
export {
  probeSandbox,
  type SandboxMode,
  type SandboxOptions,
  SandboxUnavailableError,
  type SessionSandboxSpec,
} from "./sandbox.ts";
export type {
  CommandErrorCode,
  CommandRequest,
  CommandResult,
  CreatedSession,
  ExtensionUiHost,
  ModelRow,
  OrgRuntime,
  OrgRuntimeSpec,
  PiSession,
  PromptImage,
  ProviderModelSpec,
  ProviderSpec,
  ResourcePolicy,
  RunOutcome,
  RunOutcomeStatus,
  SessionFiles,
  SessionSettings,
  SessionSlot,
  SessionSpec,
  UiAnswer,
  UiDialogMethod,
  UiRequest,
} from "./types.ts";
export { toWireEvent } from "./wire-event.ts";
