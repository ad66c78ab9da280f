// Chooses the model of a session being opened. pi would fall back on its own rules (settings,
// then the first available built-in); the fleet wants custom providers first and explicit errors.
import type { Api, Model } from "@earendil-works/pi-ai";
import type { ModelRuntime, SessionManager } from "@earendil-works/pi-coding-agent";
import { PiRuntimeError } from "./errors.ts";
import type { OrgRuntime, SessionSpec } from "./types.ts";

/**
 * The model a session starts with: the explicit `spec.model`, else the session file's last model
 * if this runtime has auth for it, else the runtime's first available model (custom providers
 * first). Throws PiRuntimeError "unknown_model" / "auth" for a bad explicit model, "no_model"
 * when nothing is available.
 */
export function resolveSessionModel(
  spec: SessionSpec,
  rt: ModelRuntime,
  sessionManager: SessionManager,
): Model<Api> {
  if (spec.model) {
    const { provider, modelId } = spec.model;
    const model = rt.getModel(provider, modelId);
    if (!model) throw new PiRuntimeError("unknown_model", `Unknown model ${provider}/${modelId}`);
    if (!spec.runtime.findModel(provider, modelId)?.available) {
      throw new PiRuntimeError("auth", `No credential configured for provider ${provider}`);
    }
    return model;
  }
  const saved = savedModel(sessionManager);
  const candidate =
    (saved && isAvailable(spec.runtime, saved.provider, saved.modelId) ? saved : undefined) ??
    firstAvailable(spec.runtime);
  const model = candidate && rt.getModel(candidate.provider, candidate.modelId);
  if (!model)
    throw new PiRuntimeError(
      "no_model",
      `No model with a configured credential in org ${spec.runtime.orgId}`,
    );
  return model;
}

/** The last model of the session's current branch (pi's own restore rule), if any. */
function savedModel(sessionManager: SessionManager): { provider: string; modelId: string } | undefined {
  let found: { provider: string; modelId: string } | undefined;
  for (const entry of sessionManager.getBranch()) {
    if (entry.type === "model_change") found = { provider: entry.provider, modelId: entry.modelId };
    else if (entry.type === "message" && entry.message.role === "assistant") {
      found = { provider: entry.message.provider, modelId: entry.message.model };
    }
  }
  return found;
}

function isAvailable(runtime: OrgRuntime, provider: string, modelId: string): boolean {
  return runtime.findModel(provider, modelId)?.available === true;
}

function firstAvailable(runtime: OrgRuntime): { provider: string; modelId: string } | undefined {
  const row = runtime.listModels().find((r) => r.available);
  return row && { provider: row.provider, modelId: row.id };
}
