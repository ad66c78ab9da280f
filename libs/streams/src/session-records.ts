/**
 * Session creation and deletion together with their project activity events. A session's record
 * (the registry's `session` hash and its entry in the project's session index) and its
 * `session_created` / `session_deleted` entry on the project activity stream are written by one
 * script each, so a dashboard following `GET /v1/projects/{id}/events` never misses a session
 * that exists, nor hears of one that was never registered, whatever crashes in between. Reading
 * sessions stays with the registry (`@pi-fleet/registry`), which reads the same hash.
 */
import { randomBytes } from "node:crypto";
import type { WireEvent } from "@pi-fleet/contracts";
import type { EventLog } from "./event-log.ts";
import { FencedError, MissingRecordError } from "./event-log.ts";
import { streamScript } from "./lua-scripts.ts";
import { STREAM_END_PREFIX, type StreamEndReason, streamEndedJson } from "./stream-hub.ts";

const CREATE = streamScript("create-session", 7);
const DELETE = streamScript("delete-session", 5);
const DELETE_PROJECT = streamScript("delete-project", 8);

/** How long the record of a project deletion waits for its maintenance job (s). */
const PROJECT_DELETION_RECORD_S = 24 * 3600;

/**
 * The longest a project id stays blocked by a deletion whose maintenance job never finished (s);
 * normally the job lifts it within seconds.
 */
const PROJECT_DELETING_MAX_S = 600;

/** Fields of a new session record; all optional, stored as given (registry `SessionRecord`). */
export interface NewSessionFields {
  name?: string;
  provider?: string;
  modelId?: string;
  /** A pi thinking level (`off` … `xhigh`), already validated by the caller. */
  thinkingLevel?: string;
  /** The session list's preview of the first user message (a fork's or clone's). */
  firstMessage?: string;
}

/** Creates and deletes session records with their activity events (see the module comment). */
export class SessionRecords {
  private readonly log: EventLog;

  /** @param log the process's event log (its connection, key space and retention) */
  constructor(log: EventLog) {
    this.log = log;
  }

  /**
   * Registers session `id` of a project — record, index entry and `history` (pi `AgentMessage`
   * objects, oldest first: a fork's or clone's persisted messages) — and appends
   * `session_created {sessionId, name?}` to the project activity stream, in one script.
   * @param token a project owner's lease token `<worker>:<epoch>` (a worker's fork, clone or
   *   new_session): the write is made only while it holds the lease; "" (the gateway's
   *   `POST …/sessions`) for an unfenced write
   * @returns the record's `createdAt` (ISO 8601) and the activity entry's offset
   * @throws FencedError when `token` no longer holds the lease; MissingRecordError when the project
   *   does not exist (deleted meanwhile); nothing is written either way. Redis errors unchanged.
   */
  async create(
    org: string,
    project: string,
    id: string,
    fields: NewSessionFields,
    history: readonly unknown[] = [],
    token = "",
  ): Promise<{ createdAt: string; offset: string }> {
    const { keys } = this.log;
    const now = new Date();
    const hash: string[] = ["id", id, "projectId", project, "createdAt", now.toISOString()];
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) hash.push(k, String(v));
    const activity = this.log.address({ org, project, activity: true });
    const event: WireEvent = {
      type: "session_created",
      sessionId: id,
      ...(fields.name ? { name: fields.name } : {}),
    };
    try {
      const offset = await CREATE.run(
        this.log.redis,
        [
          keys.lease(org, project),
          keys.project(org, project),
          keys.session(org, project, id),
          keys.sessions(org, project),
          keys.messages(org, project, id),
          activity.stream,
          activity.meta,
        ],
        [
          token,
          now.getTime(),
          id,
          this.log.retention,
          activity.channel,
          randomBytes(8).toString("hex"),
          JSON.stringify(event),
          hash.length,
          ...hash,
          ...history.map((m) => JSON.stringify(m)),
        ],
      );
      return { createdAt: now.toISOString(), offset: String(offset) };
    } catch (err) {
      if (err instanceof Error && err.message.includes("FENCED")) {
        this.log.observer.fenced?.("append");
        throw new FencedError(err.message);
      }
      if (err instanceof Error && err.message.includes("NOPROJECT")) {
        throw new MissingRecordError("the project does not exist");
      }
      throw err;
    }
  }

  /**
   * Unregisters session `id` (record and index entry) and appends `session_deleted {sessionId}`
   * to the project activity stream, in one script (gateway side, unfenced). The session's stream,
   * runs and history are the caller's to delete next (`EventLog.deleteSessionData`).
   * No event when the project itself is gone (a project deletion removes its activity stream).
   * The session stream's live subscribers get `stream_ended {reason: "session_deleted"}` and end.
   * @returns true when this call removed the session; false when it was not registered (a
   *   concurrent delete won: the event is appended once)
   * @throws Redis errors unchanged
   */
  async delete(org: string, project: string, id: string): Promise<boolean> {
    const { keys } = this.log;
    const activity = this.log.address({ org, project, activity: true });
    const event: WireEvent = { type: "session_deleted", sessionId: id };
    const removed = await DELETE.run(
      this.log.redis,
      [
        keys.session(org, project, id),
        keys.sessions(org, project),
        keys.project(org, project),
        activity.stream,
        activity.meta,
      ],
      [
        id,
        this.log.retention,
        activity.channel,
        randomBytes(8).toString("hex"),
        JSON.stringify(event),
        keys.streamChannel(org, project, id),
        endAnnouncement("session_deleted"),
      ],
    );
    return removed === 1;
  }

  /**
   * Deletes project `project` of `org` in one script: the project record and its entry in the
   * org's index, its session index and session records, its activity stream; records the session
   * ids under the deletion's id (`Keys.projectDeletion`, kept 24 h) for the deletion's maintenance
   * job; marks the project id as being deleted (`Keys.projectDeleting`, until the job lifts it:
   * no project of this id can be created meanwhile, see Registry.upsertProject); ends the
   * followers of its streams with `stream_ended {reason: "project_deleted"}`. The sessions' own
   * streams, runs and history, the queue and the files are the caller's to delete next (see
   * apps/gateway/src/purge.ts).
   * @param deletionId names this deletion (a UUID; the maintenance job carries it)
   * @returns the session ids the project had
   * @throws MissingRecordError when the project does not exist (a concurrent deletion won); Redis
   *   errors unchanged (nothing written either way)
   */
  async deleteProject(org: string, project: string, deletionId: string): Promise<string[]> {
    const { keys } = this.log;
    const activity = this.log.address({ org, project, activity: true });
    try {
      return (await DELETE_PROJECT.run(
        this.log.redis,
        [
          keys.project(org, project),
          keys.sessions(org, project),
          keys.projects(org),
          activity.stream,
          activity.meta,
          keys.projectOpenRuns(org, project),
          keys.projectDeletion(org, project, deletionId),
          keys.projectDeleting(org, project),
        ],
        [
          project,
          keys.session(org, project, ""),
          keys.pendingUi(org, project, ""),
          keys.streamChannel(org, project, ""),
          activity.channel,
          endAnnouncement("project_deleted"),
          PROJECT_DELETION_RECORD_S,
          deletionId,
          PROJECT_DELETING_MAX_S,
        ],
      )) as string[];
    } catch (err) {
      if (err instanceof Error && err.message.includes("NOPROJECT")) {
        throw new MissingRecordError("the project does not exist");
      }
      throw err;
    }
  }
}

/** The hub message that ends a stream's subscriptions: end prefix + the final event's JSON. */
function endAnnouncement(reason: StreamEndReason): string {
  return `${STREAM_END_PREFIX}${streamEndedJson(reason)}`;
}
