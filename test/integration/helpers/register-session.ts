/**
 * Test seeding: registers a session the way the gateway's `POST …/sessions` does (record plus
 * `session_created`, one script), creating its project first when it does not exist yet. Stream
 * appends and run scripts refuse a session that is not registered.
 */
import type { Keys, Redis } from "@pi-fleet/redis";
import { Registry } from "@pi-fleet/registry";
import { EventLog, type NewSessionFields, SessionRecords, type SessionRef } from "@pi-fleet/streams";

/** Registers `ref.session` (and its project, named after its id, when missing). */
export async function registerSession(
  redis: Redis,
  keys: Keys,
  ref: SessionRef,
  fields: NewSessionFields = {},
): Promise<void> {
  await new Registry(redis, keys).upsertProject(ref.org, ref.project, ref.project);
  await new SessionRecords(new EventLog(redis, keys, 1000)).create(ref.org, ref.project, ref.session, fields);
}
