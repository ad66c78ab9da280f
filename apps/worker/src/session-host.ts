/**
 * Opens and caches the pi sessions of one owned project. Only the lease holder opens a session
 * file (pi has no file lock: hazard H12), so a SessionHost lives exactly as long as its lease.
 * Each run re-applies the session's registry settings (model, thinking level) before it starts.
 * When the org's providers or keys changed since a session was opened, the idle session is
 * reopened on the new runtime, so a new key takes effect on the next run without a restart.
 * Each session gets the operator's resource policy (PI_EXTENSION_PATHS, …; project extensions
 * only for PI_FLEET_TRUSTED_ORGS) and a UiBridge as its extension UI, kept across reopens.
 * The org's runtime has its own custom providers plus the operator presets it does not shadow
 * (the LiteLLM preset). The project dir is created on the first open, from
 * PI_FLEET_PROJECT_TEMPLATE_DIR when set (project-template.ts).
 */
import { mkdir, rm } from "node:fs/promises";
import { splitList } from "@pi-fleet/config";
import { DEFAULT_ORG } from "@pi-fleet/contracts";
import type { ProjectLease } from "@pi-fleet/leases";
import {
  listBuiltinModels,
  type OrgRuntime,
  openSession,
  type PiSession,
  type ResourcePolicy,
} from "@pi-fleet/pi-runtime";
import { defaultModel, withPresets } from "@pi-fleet/registry";
import { prepareProjectDir } from "./project-template.ts";
import { UiBridge } from "./ui-bridge.ts";
import type { WorkerContext } from "./worker-context.ts";

/** An open (or opening) session and the runtime it was opened on. */
interface HostedSession {
  runtime: OrgRuntime;
  session: Promise<PiSession>;
  /** Monotonic ms of the last acquire (see evictIdle). */
  usedAt: number;
  /** The session once open. */
  opened?: PiSession;
}

let builtinIds: Promise<ReadonlySet<string>> | undefined;
/** `org/provider` pairs already warned about (runtime() runs on every acquire). */
const warnedUnknown = new Set<string>();

/** How many deleted session ids a host remembers (markDeleted). */
const MAX_DELETED = 10_000;

/** Ids of pi's built-in providers (from the static catalog, computed once per process). */
function builtinProviderIds(): Promise<ReadonlySet<string>> {
  builtinIds ??= listBuiltinModels().then(
    (rows) => new Set(rows.map((r) => r.provider)),
    (err: unknown) => {
      builtinIds = undefined;
      throw err;
    },
  );
  return builtinIds;
}

/**
 * The session's registry record is gone (it was deleted): it is not opened, so nothing (a run
 * queued behind an aborted one, a late command) recreates its transcript.
 */
export class SessionGoneError extends Error {
  override readonly name = "SessionGoneError";
  constructor() {
    super("the session was deleted");
  }
}

/** The host is closing (its project is being released): no session may be opened now. */
export class ProjectReleasingError extends Error {
  override readonly name = "ProjectReleasingError";
  constructor() {
    super("the project is being released");
  }
}

/** The pi sessions of one project. */
export class SessionHost {
  private readonly ctx: WorkerContext;
  private readonly org: string;
  private readonly project: string;
  private readonly sessions = new Map<string, HostedSession>();
  /** Sessions deleted while this host ran, oldest first (see markDeleted). */
  private readonly deleted = new Set<string>();
  private readonly lease: ProjectLease;
  private readonly policy: ResourcePolicy;
  private readonly bridges = new Map<string, UiBridge>();
  /** Set by close(): sessions opened after it would outlive the ownership (never disposed). */
  private closed = false;
  /** The project dir preparation in flight, if any (see prepareProjectDir). */
  private projectDirReady: Promise<void> | undefined;

  constructor(ctx: WorkerContext, org: string, project: string, lease: ProjectLease) {
    this.ctx = ctx;
    this.org = org;
    this.project = project;
    this.lease = lease;
    const env = ctx.env;
    this.policy = {
      extensionPaths: splitList(env.PI_EXTENSION_PATHS),
      skillPaths: splitList(env.PI_SKILL_PATHS),
      promptPaths: splitList(env.PI_PROMPT_PATHS),
      noExtensions: env.PI_NO_EXTENSIONS,
      noSkills: env.PI_NO_SKILLS,
      noPromptTemplates: env.PI_NO_PROMPT_TEMPLATES,
      trustProjectExtensions: splitList(env.PI_FLEET_TRUSTED_ORGS).includes(org),
    };
  }

  /** The extension UI bridge of a session opened here (undefined if it never was). */
  uiBridge(sessionId: string): UiBridge | undefined {
    return this.bridges.get(sessionId);
  }

  /**
   * The org's pi runtime (rebuilt by the cache when its providers or keys changed). Built-in keys:
   * the org's stored credentials, opened here (only workers decrypt), over the workers' env keys
   * for the `default` org. The revision covers the registry revision, a digest of the stored
   * secrets and the env key names, so any credential change yields a new runtime. Custom
   * providers: the org's own, then the operator presets (with their keys) it does not shadow;
   * presets are fixed for the worker's lifetime, so they need no part in the revision.
   * @throws Error when a stored key cannot be decrypted (names the provider, never the key)
   */
  async runtime(): Promise<OrgRuntime> {
    const spec = await this.ctx.registry.providerRuntimeSpec(this.org);
    const envKeys = this.org === DEFAULT_ORG ? this.ctx.builtinKeys : {};
    const builtinKeys: Record<string, string> = { ...envKeys };
    const stored = Object.entries(spec.builtinKeys);
    if (stored.length > 0) {
      const known = await builtinProviderIds();
      for (const [provider, key] of stored) {
        if (known.has(provider)) builtinKeys[provider] = key;
        else if (!warnedUnknown.has(`${this.org}/${provider}`)) {
          warnedUnknown.add(`${this.org}/${provider}`);
          this.ctx.logger.warn(
            { org: this.org, provider },
            "ignoring a stored credential: no such built-in provider",
          );
        }
      }
    }
    return this.ctx.runtimes.get({
      orgId: this.org,
      revision: `${spec.revision}:${spec.credentialDigest}:${Object.keys(envKeys).sort().join(",")}`,
      providers: withPresets(spec.providers, this.ctx.presetProviders),
      builtinKeys,
    });
  }

  /**
   * The session, opened (or reopened from its transcript) on first use, with the registry's
   * model settings applied. A session opened on an older runtime of the org is disposed and
   * reopened on the current one unless it is streaming. @throws PiRuntimeError (no model,
   * corrupt transcript, …); ProjectReleasingError once close() began; SessionGoneError when the
   *   session is not registered (deleted)
   */
  async acquire(sessionId: string): Promise<PiSession> {
    if (this.closed) throw new ProjectReleasingError();
    if (this.deleted.has(sessionId)) throw new SessionGoneError();
    // Independent reads: one round trip, not two, before every run.
    const [runtime, record] = await Promise.all([
      this.runtime(),
      this.ctx.registry.getSession(this.org, this.project, sessionId),
    ]);
    if (this.closed) throw new ProjectReleasingError();
    // Deleted meanwhile (markDeleted), though the record was read before: checked after every wait.
    if (!record || this.deleted.has(sessionId)) throw new SessionGoneError();
    const models = runtime.listModels();
    const chosen =
      record?.provider && record.modelId
        ? { provider: record.provider, modelId: record.modelId }
        : (() => {
            const m = defaultModel(models);
            return m ? { provider: m.provider, modelId: m.id } : undefined;
          })();
    const stale = this.sessions.get(sessionId);
    if (stale && stale.runtime !== runtime) {
      const previous = await stale.session.catch(() => undefined);
      if (this.closed) throw new ProjectReleasingError();
      if (this.deleted.has(sessionId)) throw new SessionGoneError();
      // Still the same entry after the await, and not in the middle of a run: reopen it.
      if (this.sessions.get(sessionId) === stale && !previous?.isStreaming) {
        const disposed = previous ? previous.dispose().catch(() => undefined) : Promise.resolve();
        this.host(sessionId, runtime, () =>
          disposed.then(() => this.open(runtime, sessionId, chosen, record?.thinkingLevel)),
        );
      }
    }
    const entry =
      this.sessions.get(sessionId) ??
      this.host(sessionId, runtime, () => this.open(runtime, sessionId, chosen, record?.thinkingLevel));
    entry.usedAt = performance.now();
    const session = await entry.session;
    // close() began while it opened: close() disposes it (it was hosted), so it may not be used.
    if (this.closed) throw new ProjectReleasingError();
    // Deleted while it opened: forgetDeleted() disposes it (it was hosted).
    if (this.deleted.has(sessionId)) throw new SessionGoneError();
    const current = session.settings();
    if (chosen && (current.model?.provider !== chosen.provider || current.model?.id !== chosen.modelId)) {
      await session.setModel(chosen.provider, chosen.modelId);
      if (this.deleted.has(sessionId)) throw new SessionGoneError();
    }
    if (record?.thinkingLevel && current.thinkingLevel !== record.thinkingLevel) {
      session.setThinkingLevel(record.thinkingLevel);
    }
    return session;
  }

  /** Records an opening session; a failed open is forgotten (if it is still the hosted one). */
  private host(sessionId: string, runtime: OrgRuntime, open: () => Promise<PiSession>): HostedSession {
    const entry: HostedSession = { runtime, session: open(), usedAt: performance.now() };
    this.sessions.set(sessionId, entry);
    entry.session.then(
      (session) => {
        entry.opened = session;
      },
      () => undefined,
    );
    entry.session.catch(() => {
      if (this.sessions.get(sessionId) === entry) this.sessions.delete(sessionId);
    });
    return entry;
  }

  /**
   * Marks a session deleted (control `forget_session`, or its run found its record gone): from now
   * on acquire() refuses it (SessionGoneError), also an acquire already waiting for its record or
   * runtime. Remembers the last {@link MAX_DELETED} ids (session ids are never reused; an id
   * forgotten here is still refused by its missing record).
   */
  markDeleted(sessionId: string): void {
    this.deleted.delete(sessionId);
    this.deleted.add(sessionId);
    if (this.deleted.size > MAX_DELETED) {
      const oldest = this.deleted.values().next().value;
      if (oldest !== undefined) this.deleted.delete(oldest);
    }
  }

  /**
   * A deleted session's end on this owner (call after aborting its run): marked deleted, disposed,
   * and its transcript removed unless the session is registered (a forget for a session that
   * exists deletes nothing). The deletion's `purge-session` job removes the file too, 5 s after
   * the deletion began; pi may still append to it until its abort ended (an aborted message),
   * which can take longer, so the owner removes it again once pi let go of the session.
   */
  async forgetDeleted(sessionId: string): Promise<void> {
    this.markDeleted(sessionId);
    await this.forget(sessionId);
    if (await this.ctx.registry.getSession(this.org, this.project, sessionId)) {
      // Not deleted after all: it may be opened again.
      this.deleted.delete(sessionId);
      return;
    }
    await rm(this.ctx.paths.sessionFile(this.org, this.project, sessionId), { force: true });
  }

  /** Disposes one session (aborting it first if it runs); its waiting dialogs get pi's defaults. */
  async forget(sessionId: string): Promise<void> {
    const entry = this.sessions.get(sessionId);
    this.sessions.delete(sessionId);
    const bridge = this.bridges.get(sessionId);
    this.bridges.delete(sessionId);
    // Dialogs first: an extension awaiting one would otherwise hold up the abort inside dispose.
    const closing = bridge?.dispose();
    const session = await entry?.session.catch(() => undefined);
    await session?.dispose().catch(() => undefined);
    await closing;
  }

  /**
   * Disposes the sessions last acquired more than `idleMs` ago that are open (not opening), not
   * streaming and not `busy` (a run or command of the caller's still uses them). Their
   * transcripts stay; the next acquire reopens them.
   * @returns how many were disposed
   */
  async evictIdle(idleMs: number, busy: (sessionId: string) => boolean): Promise<number> {
    const cutoff = performance.now() - idleMs;
    // Chosen and forgotten without an await in between: an acquire either came before (and
    // marked the session used) or comes after (and opens it again).
    const idle = [...this.sessions]
      .filter(([id, e]) => e.usedAt <= cutoff && e.opened && !e.opened.isStreaming && !busy(id))
      .map(([id]) => id);
    await Promise.all(idle.map((id) => this.forget(id)));
    return idle.length;
  }

  /** Disposes every session; from now on acquire() refuses (ProjectReleasingError). */
  async close(): Promise<void> {
    this.closed = true;
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
    await this.prepareProjectDir(projectDir);
    await mkdir(this.ctx.paths.sessionsDir(this.org, this.project), { recursive: true });
    let ui = this.bridges.get(sessionId);
    if (!ui) {
      ui = new UiBridge(this.ctx, this.lease, { org: this.org, project: this.project, session: sessionId });
      this.bridges.set(sessionId, ui);
    }
    return openSession({
      runtime,
      projectDir,
      sessionFile,
      sessionId,
      agentDir: this.ctx.agentDir,
      model,
      thinkingLevel,
      bashTimeoutMs: this.ctx.env.PI_FLEET_BASH_TIMEOUT_MS,
      sandbox: { mode: this.ctx.env.PI_FLEET_SANDBOX, network: this.ctx.env.PI_FLEET_SANDBOX_NETWORK },
      ...this.policy,
      ui,
    });
  }

  /**
   * Creates the project dir (seeded from the template) unless it exists. Concurrent opens share
   * one attempt; each later open checks again (cheap), so a purged and recreated project works.
   */
  private prepareProjectDir(projectDir: string): Promise<void> {
    this.projectDirReady ??= prepareProjectDir(projectDir, this.ctx.env.PI_FLEET_PROJECT_TEMPLATE_DIR)
      .then(
        (outcome) => {
          if (outcome === "seeded") {
            this.ctx.logger.info(
              { org: this.org, project: this.project },
              "project dir seeded from the template",
            );
          }
        },
        (err: unknown) => {
          this.ctx.logger.error(
            { org: this.org, project: this.project, err: (err as Error).message },
            "cannot prepare the project dir",
          );
          throw err;
        },
      )
      .finally(() => {
        this.projectDirReady = undefined;
      });
    return this.projectDirReady;
  }
}

type PiSessionThinking = Parameters<PiSession["setThinkingLevel"]>[0] | undefined;
