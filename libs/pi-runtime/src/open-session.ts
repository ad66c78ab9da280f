// Assembles one pi agent session from explicit, isolated parts (the recipe of pi-sdk.md §2): the
// org's runtime, a loader that loads only what the resource policy names, in-memory untrusted
// settings, the session file opened at its exact path, the bash tool replaced by the minimal-env
// spawner (on the host or in bubblewrap), the file tools confined to the project dir (reads also
// to the operator skill dirs, whose skills pi tells the model to `read`), and extensions bound to
// the fleet's extension UI (pi-sdk.md §6).
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, isAbsolute, join } from "node:path";
import {
  createAgentSession,
  createBashToolDefinition,
  defineTool,
  SessionManager,
  SettingsManager,
} from "@earendil-works/pi-coding-agent";
import type { WireEvent } from "@pi-fleet/contracts";
import { createHostBashOperations, DEFAULT_BASH_TIMEOUT_MS, minimalBashEnv } from "./bash-operations.ts";
import { confinedFileTools } from "./confined-file-operations.ts";
import { errorMessage, PiRuntimeError } from "./errors.ts";
import { createExtensionUiContext, extensionErrorEvent } from "./extension-ui.ts";
import { resolveSessionModel } from "./model-selection.ts";
import { piModelRuntime } from "./org-runtime.ts";
import { OverflowLogs } from "./overflow-logs.ts";
import { PiAgentSession } from "./pi-session.ts";
import { readProjectAgentsFile } from "./project-context.ts";
import { createPolicyResourceLoader } from "./resource-policy.ts";
import { DEFAULT_BWRAP_PATH, type SessionSandboxSpec } from "./sandbox.ts";
import type { PiSession, SessionSpec } from "./types.ts";

/** Built-in tools the agent gets; `bash` is replaced by the spawner, the file tools are confined. */
const TOOL_NAMES = ["read", "bash", "edit", "write"];

/**
 * Opens the session file (creating it on the first assistant message if missing) and returns a
 * ready PiSession. Reads `<projectDir>/AGENTS.md` (see readProjectAgentsFile) and loads the
 * extensions, skills and prompt templates of the spec's resource policy (createPolicyResourceLoader),
 * then binds extensions in "rpc" mode with `spec.ui` as their UI (pi emits `session_start` here);
 * extension errors and project extensions that failed to load reach `spec.ui.notify` as
 * `extension_error` events. Opening repairs a torn last line of an existing file, so only the
 * session's lease holder may call it.
 * Throws PiRuntimeError "corrupt_session" (invalid header; file untouched), "unknown_model" (the
 * explicit model is not in the runtime), "auth" (its provider has no credential), "no_model"
 * (no explicit model and none available); TypeError for relative paths; Error when projectDir is
 * not a directory or an operator extension did not load.
 * File tools refuse paths outside the project dir, except that `read` may also read inside the
 * operator skill paths (`spec.skillPaths`; confined-file-operations.ts); with
 * `spec.sandbox` mode "bwrap" every bash command runs inside bubblewrap (sandbox.ts).
 */
export async function openSession(spec: SessionSpec & SessionSandboxSpec): Promise<PiSession> {
  for (const [name, path] of [
    ["projectDir", spec.projectDir],
    ["sessionFile", spec.sessionFile],
    ["agentDir", spec.agentDir],
  ] as const) {
    if (!isAbsolute(path)) throw new TypeError(`${name} must be an absolute path: ${path}`);
  }
  if (!(await stat(spec.projectDir)).isDirectory()) throw new Error(`Not a directory: ${spec.projectDir}`);
  const rt = piModelRuntime(spec.runtime);
  const sessionManager = openSessionFile(spec.sessionFile, spec.projectDir);
  const model = resolveSessionModel(spec, rt, sessionManager);
  const agentsFile = await readProjectAgentsFile(spec.projectDir);
  const tmpDir = await mkdtemp(join(tmpdir(), "pf-bash-"));
  try {
    // The same spawner for the agent's bash tool and the user's bash command, one instance each:
    // an abort kills every process group of its instance, and a run abort must not kill a user
    // command (nor `abort_bash` the agent's tool call).
    const sandbox = spec.sandbox?.mode === "bwrap" ? spec.sandbox : undefined;
    const spawner = () =>
      createHostBashOperations({
        cwd: spec.projectDir,
        // In the sandbox, tmpDir is mounted as /tmp.
        env: minimalBashEnv(spec.projectDir, sandbox ? "/tmp" : tmpDir, spec.bashEnv),
        maxTimeoutMs: spec.bashTimeoutMs ?? DEFAULT_BASH_TIMEOUT_MS,
        ...(sandbox
          ? {
              sandbox: {
                bwrapPath: sandbox.bwrapPath ?? DEFAULT_BWRAP_PATH,
                tmpDir,
                network: !!sandbox.network,
              },
            }
          : {}),
      });
    const bashOperations = spawner();
    const userBashOperations = spawner();
    const overflowLogs = new OverflowLogs(tmpDir, sandbox !== undefined);
    const bash = overflowLogs.wrapBashTool(
      createBashToolDefinition(spec.projectDir, {
        operations: bashOperations,
        exposeSessionEnvironment: false,
      }),
    );
    // Per session and in memory: pi's "global" settings writes (steering mode, auto compaction,
    // auto retry; hazard H10) stay inside this session. Never trusted: no project packages,
    // npmCommand or shell settings, even for orgs whose project extensions load (H1).
    const settingsManager = SettingsManager.inMemory(
      { cacheWarming: "off", compaction: { enabled: true }, retry: { enabled: true, maxRetries: 2 } },
      { projectTrusted: false },
    );
    const { loader, projectErrors, skillRoots, operatorSkillRoots } = await createPolicyResourceLoader({
      policy: spec,
      projectDir: spec.projectDir,
      agentDir: spec.agentDir,
      settingsManager,
      agentsFiles: agentsFile ? [agentsFile] : [],
    });
    const { session } = await createAgentSession({
      cwd: spec.projectDir,
      agentDir: spec.agentDir,
      modelRuntime: rt,
      model,
      ...(spec.thinkingLevel ? { thinkingLevel: spec.thinkingLevel } : {}),
      resourceLoader: loader,
      sessionManager,
      settingsManager,
      tools: TOOL_NAMES,
      // defineTool: pi's identity helper that widens the tool type
      customTools: [
        defineTool(bash),
        ...confinedFileTools(spec.projectDir, TOOL_NAMES, { readOnlyRoots: operatorSkillRoots }),
      ],
    });
    const ui = spec.ui;
    for (const e of projectErrors) {
      ui?.notify({ type: "extension_error", extensionPath: e.path, event: "load", error: e.error });
    }
    try {
      await session.bindExtensions({
        ...(ui ? { uiContext: createExtensionUiContext(ui) } : {}),
        mode: "rpc",
        onError: (err) => ui?.notify(extensionErrorEvent(err, spec.projectDir)),
      });
    } catch (err) {
      session.dispose();
      throw err;
    }
    const piSession = new PiAgentSession({
      session,
      sessionId: spec.sessionId ?? basename(spec.sessionFile, ".jsonl"),
      runtime: spec.runtime,
      rt,
      bashOperations: userBashOperations,
      tmpDir,
      overflowLogs,
      skillRoots,
      // Events outside runs take the UI host's ordered out-of-band path (the worker: the stream).
      ...(ui ? { outOfRun: (event: WireEvent) => ui.notify(event) } : {}),
    });
    // Background children of finished commands (on the host) die with the session.
    const dispose = piSession.dispose.bind(piSession);
    piSession.dispose = () =>
      dispose().finally(() => {
        bashOperations.killAll();
        userBashOperations.killAll();
      });
    return piSession;
  } catch (err) {
    await rm(tmpDir, { recursive: true, force: true }).catch(() => {});
    throw err;
  }
}

/**
 * SessionManager.open with the project dir as cwd: without the override pi records
 * process.cwd() (the worker's cwd) in the header of a new file. A moved project dir makes pi
 * append a system note about the new cwd on resume.
 */
function openSessionFile(sessionFile: string, projectDir: string): SessionManager {
  try {
    return SessionManager.open(sessionFile, undefined, projectDir);
  } catch (err) {
    const message = errorMessage(err);
    if (message.includes("not a valid pi session")) {
      throw new PiRuntimeError("corrupt_session", `Session file is not a valid pi session: ${sessionFile}`, {
        cause: err,
      });
    }
    throw err;
  }
}
