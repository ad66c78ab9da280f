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
import { STREAM_END_PREFIX } from "./stream-hub.ts";

const CREATE = streamScript("create-session", 7);
const DELETE = streamScript("delete-session", 5);

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
   * Ends the live subscriptions of a deleted project's streams — each session's and the activity
   * stream — with `stream_ended {reason: "project_deleted"}` (one pipelined PUBLISH each; best
   * effort, as every announcement). Call after the project's records are deleted.
   * @param sessions the ids the project had (`Registry.deleteProject`)
   * @throws Redis errors unchanged
   */
  async endProjectStreams(org: string, project: string, sessions: readonly string[]): Promise<void> {
    const { keys } = this.log;
    const end = endAnnouncement("project_deleted");
    const pipeline = this.log.redis.pipeline();
    for (const id of sessions) pipeline.publish(keys.streamChannel(org, project, id), end);
    pipeline.publish(keys.activityChannel(org, project), end);
    await pipeline.exec();
  }
}

/** The hub message that ends a stream's subscriptions: end prefix + the final event's JSON. */
function endAnnouncement(reason: "session_deleted" | "project_deleted"): string {
  return `${STREAM_END_PREFIX}${JSON.stringify({ type: "stream_ended", reason })}`;
}
