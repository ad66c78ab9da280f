/**
 * The worker's side of fork, clone and new_session (pi-runtime's `SessionFiles`): new fleet
 * sessions get a random UUID and the file `WorkspacePaths.sessionFile(org, project, id)`, and are
 * registered like `POST …/sessions` registers one (registry record + `session_created` activity),
 * with the copied branch as their persisted history. Only the project's lease holder builds one
 * (it is the single writer of the project's session files): every step checks the lease first,
 * and every Redis write is fenced by the lease token, so an ex-owner that has not yet noticed its
 * loss writes nothing.
 */
import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { isEntityId, SESSION_NAME_MAX_LENGTH } from "@pi-fleet/contracts";
import type { ProjectLease } from "@pi-fleet/leases";
import type { CreatedSession, SessionFiles, SessionSlot } from "@pi-fleet/pi-runtime";
import { FencedError, MissingRecordError } from "@pi-fleet/streams";
import type { WorkerContext } from "./worker-context.ts";

/** The error of a step refused because the project lease moved. */
const LEASE_LOST = "The project lease was lost: try again";

/** Suffix of a derived session name, by the command that created the session. */
const NAME_SUFFIX: Record<CreatedSession["origin"], string | undefined> = {
  fork: "fork",
  clone: "clone",
  new_session: undefined,
};

/** SessionFiles for commands run on one session (`source`) of a project this worker owns. */
export class WorkerSessionFiles implements SessionFiles {
  private readonly ctx: WorkerContext;
  private readonly lease: ProjectLease;
  private readonly org: string;
  private readonly project: string;
  private readonly source: string;

  constructor(ctx: WorkerContext, lease: ProjectLease, source: string) {
    this.ctx = ctx;
    this.lease = lease;
    this.org = lease.org;
    this.project = lease.project;
    this.source = source;
  }

  /** The file of a registered session of this project; undefined for an unknown or invalid id. */
  async sessionFile(sessionId: string): Promise<string | undefined> {
    if (!isEntityId(sessionId)) return undefined;
    const record = await this.ctx.registry.getSession(this.org, this.project, sessionId);
    return record ? this.ctx.paths.sessionFile(this.org, this.project, sessionId) : undefined;
  }

  /** A fresh UUID and its file path (sessions dir created). @throws Error when the lease is gone */
  async allocate(): Promise<SessionSlot> {
    this.assertOwner();
    await mkdir(this.ctx.paths.sessionsDir(this.org, this.project), { recursive: true });
    const sessionId = randomUUID();
    return { sessionId, sessionFile: this.ctx.paths.sessionFile(this.org, this.project, sessionId) };
  }

  /**
   * Registers the new session with the source session's model settings (the branch continues on
   * the same model and thinking level), its messages as history and a name derived from the
   * source: `<source name> (fork)` / `(clone)`, the source's registry name or else pi's name on
   * the branch, shortened so the whole is at most SESSION_NAME_MAX_LENGTH characters; no name
   * when neither exists, or for new_session. The record (with its history) and its
   * `session_created` activity event are written by one script, only while this lease's
   * token holds the project lease.
   * @throws Error when the lease is gone, the write was fenced or the project was deleted
   *   (nothing registered then); Redis errors
   */
  async register(slot: SessionSlot, created: CreatedSession): Promise<void> {
    this.assertOwner();
    const source = await this.ctx.registry.getSession(this.org, this.project, this.source);
    const base = source?.name ?? created.piSessionName;
    const suffix = NAME_SUFFIX[created.origin];
    // At most SESSION_NAME_MAX_LENGTH characters (code points, as the API's schemas count), as
    // every session name: the base is shortened to fit.
    const name =
      base && suffix
        ? `${[...base]
            .slice(0, SESSION_NAME_MAX_LENGTH - suffix.length - 3)
            .join("")
            .trimEnd()} (${suffix})`
        : undefined;
    try {
      await this.ctx.sessions.create(
        this.org,
        this.project,
        slot.sessionId,
        {
          name,
          provider: source?.provider,
          modelId: source?.modelId,
          thinkingLevel: source?.thinkingLevel,
          firstMessage: created.firstMessage,
        },
        created.messages,
        this.lease.token,
      );
    } catch (err) {
      if (err instanceof FencedError) throw new Error(LEASE_LOST);
      if (err instanceof MissingRecordError) throw new Error("The project was deleted");
      throw err;
    }
  }

  private assertOwner(): void {
    if (!this.lease.held) throw new Error(LEASE_LOST);
  }
}
