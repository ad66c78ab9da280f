/**
 * Opens and caches the pi sessions of one owned project. Only the lease holder opens a session
 * file (pi has no file lock: hazard H12), so a SessionHost lives exactly as long as its lease.
 * Each run re-applies the session's registry settings (model, thinking level) before it starts.
 */
import { mkdir } from "node:fs/promises";
import { DEFAULT_ORG } from "@pi-fleet/contracts";
import { type OrgRuntime, openSession, type PiSession } from "@pi-fleet/pi-runtime";
import { defaultModel } from "@pi-fleet/registry";
import type { WorkerContext } from "./worker-context.ts";

/** The pi sessions of one project. */
export class SessionHost {
  private readonly ctx: WorkerContext;
  private readonly org: string;
  private readonly project: string;
  private readonly sessions = new Map<string, Promise<PiSession>>();

  constructor(ctx: WorkerContext, org: string, project: string) {
    this.ctx = ctx;
    this.org = org;
    this.project = project;
  }

  /** The org's pi runtime (rebuilt by the cache when its providers changed). */
  async runtime(): Promise<OrgRuntime> {
    const spec = await this.ctx.registry.providerRuntimeSpec(this.org);
    const builtinKeys = this.org === DEFAULT_ORG ? this.ctx.builtinKeys : {};
    return this.ctx.runtimes.get({
      orgId: this.org,
      revision: `${spec.revision}:${Object.keys(builtinKeys).sort().join(",")}`,
      providers: spec.providers,
      builtinKeys,
    });
  }

  /**
   * The session, opened (or reopened from its transcript) on first use, with the registry's
   * model settings applied. @throws PiRuntimeError (no model, corrupt transcript, …)
   */
  async acquire(sessionId: string): Promise<PiSession> {
    const runtime = await this.runtime();
    const record = await this.ctx.registry.getSession(this.org, this.project, sessionId);
    const models = runtime.listModels();
    const chosen =
      record?.provider && record.modelId
        ? { provider: record.provider, modelId: record.modelId }
        : (() => {
            const m = defaultModel(models);
            return m ? { provider: m.provider, modelId: m.id } : undefined;
          })();
    let pending = this.sessions.get(sessionId);
    if (!pending) {
      pending = this.open(runtime, sessionId, chosen, record?.thinkingLevel);
      this.sessions.set(sessionId, pending);
      pending.catch(() => this.sessions.delete(sessionId));
    }
    const session = await pending;
    const current = session.settings();
    if (chosen && (current.model?.provider !== chosen.provider || current.model?.id !== chosen.modelId)) {
      await session.setModel(chosen.provider, chosen.modelId);
    }
    if (record?.thinkingLevel && current.thinkingLevel !== record.thinkingLevel) {
      session.setThinkingLevel(record.thinkingLevel);
    }
    return session;
  }

  /** Disposes one session (aborting it first if it runs). */
  async forget(sessionId: string): Promise<void> {
    const pending = this.sessions.get(sessionId);
    this.sessions.delete(sessionId);
    const session = await pending?.catch(() => undefined);
    await session?.dispose().catch(() => undefined);
  }

  /** Disposes every session. */
  async close(): Promise<void> {
    await Promise.all([...this.sessions.keys()].map((id) => this.forget(id)));
  }

  private async open(
    runtime: OrgRuntime,
    sessionId: string,
    model: { provider: string; modelId: string } | undefined,
    thinkingLevel: PiSessionThinking,
  ): Promise<PiSession> {
    const projectDir = this.ctx.paths.projectDir(this.org, this.project);
    const sessionFile = this.ctx.paths.sessionFile(this.org, this.project, sessionId);
    await mkdir(projectDir, { recursive: true });
    await mkdir(this.ctx.paths.sessionsDir(this.org, this.project), { recursive: true });
    return openSession({
      runtime,
      projectDir,
      sessionFile,
      agentDir: this.ctx.agentDir,
      model,
      thinkingLevel,
      bashTimeoutMs: this.ctx.env.PI_FLEET_BASH_TIMEOUT_MS,
    });
  }
}

type PiSessionThinking = Parameters<PiSession["setThinkingLevel"]>[0] | undefined;
