/**
 * Every Redis key and channel name pi-fleet uses, in one place (only this file spells key strings).
 * Project-scoped keys share the hash tag `{<org>.<project>}` so Lua scripts touching a lease, a
 * stream and a run record stay in one Redis Cluster slot (queues-and-streams.md §1). Ids are
 * validated slugs before they get here; "." cannot occur in a slug, so tags never collide.
 */

/**
 * The error a worker's control inbox answers when it does not own the project, or is letting it
 * go (its runner is closing): the gateway then waits for the next owner and asks again.
 */
export const CONTROL_NOT_OWNER = "not the owner";

/** Key builders bound to one prefix (`PI_FLEET_KEY_PREFIX`, default `pf`). */
export interface Keys {
  readonly prefix: string;
  /** BullMQ `prefix` option for every queue: `<p>:q`. */
  readonly queuePrefix: string;
  /** BullMQ queue name of the dispatch queue (jobs "own" a project). */
  readonly dispatchQueue: string;
  /** The LIST that holds projects waiting for an owner — the autoscaling signal (`LLEN`). */
  readonly dispatchWaitList: string;
  /** Hash tag of a project: `{org.project}`. Also its BullMQ queue name. */
  projectTag(org: string, project: string): string;
  /** Lease of a project: `<workerId>:<epoch>` with a PX TTL. */
  lease(org: string, project: string): string;
  /** Monotonic epoch counter of a project's lease (no TTL: epochs never repeat). */
  epoch(org: string, project: string): string;
  /**
   * The last epoch whose owner released the lease cleanly (nothing running, no job fetched): the
   * next owner (epoch + 1) then has no earlier ownership to reconcile. No TTL, like the epoch.
   */
  leaseClean(org: string, project: string): string;
  /** Session event stream (Redis stream; entry field `d` = wire event JSON). */
  stream(org: string, project: string, session: string): string;
  /** Stream meta hash: `epoch` (random, set on first write), `last` (last entry id). */
  streamMeta(org: string, project: string, session: string): string;
  /** Pub/sub channel announcing new entries of one stream (the gateway hub's live path). */
  streamChannel(org: string, project: string, session: string): string;
  /** Project activity stream: session created/deleted, run queued/started/ended (compact events). */
  activityStream(org: string, project: string): string;
  /** Meta hash of the project activity stream (same fields as a session stream's). */
  activityMeta(org: string, project: string): string;
  /** Pub/sub channel announcing new entries of the project activity stream. */
  activityChannel(org: string, project: string): string;
  /** LIST of the session's persisted messages (JSON), mirrored from `message_end` events. */
  messages(org: string, project: string, session: string): string;
  /** Hash: pending extension UI request id → request JSON (answered ones are removed). */
  pendingUi(org: string, project: string, session: string): string;
  /** Run record hash. */
  run(org: string, project: string, runId: string): string;
  /** ZSET of a project's open (queued or running) runs: run id -> enqueue time (ms); its queue cap. */
  projectOpenRuns(org: string, project: string): string;
  /** ZSET of a session's runs scored by per-session sequence number. */
  sessionRuns(org: string, project: string, session: string): string;
  /** Per-session run sequence counter. */
  sessionSeq(org: string, project: string, session: string): string;
  /** ZSET of every run of a session (any state) by sequence number: deleted with the session. */
  sessionRunIds(org: string, project: string, session: string): string;
  /** Idempotency record: `Idempotency-Key` digest → runId (24 h TTL). */
  idempotency(org: string, project: string, session: string, keyDigest: string): string;
  /** Session registry hash. */
  session(org: string, project: string, session: string): string;
  /** ZSET of a project's sessions scored by creation time (ms). */
  sessions(org: string, project: string): string;
  /**
   * Record of one project deletion (`deletionId`): the deleted project's session ids,
   * comma-separated, kept (TTL) until its maintenance job has purged them.
   */
  projectDeletion(org: string, project: string, deletionId: string): string;
  /**
   * Set (to the deletion's id, with a TTL) while a project is being deleted, until its maintenance
   * job has removed the files: a project of the same id cannot be created meanwhile.
   */
  projectDeleting(org: string, project: string): string;
  /** Project registry hash. */
  project(org: string, project: string): string;
  /** ZSET of an org's projects scored by creation time (ms). */
  projects(org: string): string;
  /** Hash: custom provider id → provider config JSON (no secrets). */
  providers(org: string): string;
  /**
   * Hash: custom provider id → API key sealed by `@pi-fleet/security`'s SecretBox (values written
   * before sealing existed are plaintext and still read). Never returned by the API, never logged.
   */
  providerKeys(org: string): string;
  /**
   * Hash: built-in pi provider id → credential JSON `{type: "api_key", sealed, updatedAt}` where
   * `sealed` is the SecretBox-sealed key. Only workers open it; never returned, never logged.
   */
  providerCredentials(org: string): string;
  /** String: revision counter of an org's provider configuration (runtime cache key). */
  providersRevision(org: string): string;
  /** String: built-in model catalog JSON published by workers (the gateway never loads pi). */
  readonly catalog: string;
  /**
   * String: digest of the catalog JSON, written after it by each publish; readers keep the parsed
   * catalog while it is unchanged (the document is ~360 KB: 1.3 ms to parse).
   */
  readonly catalogRevision: string;
  /** Pub/sub channel on which a worker announces that it now owns a project (on-demand ownership). */
  ownerAnnounce(org: string, project: string): string;
  /** Pub/sub channel of a worker's control inbox. */
  workerInbox(workerId: string): string;
  /** Pub/sub channel on which a gateway receives control replies. */
  gatewayReplies(gatewayId: string): string;
  /** True when `channel` is some gateway's reply channel of this deployment (a worker checks `replyTo`). */
  isGatewayReplies(channel: string): boolean;
  /**
   * String (short PX): the images of a steer / follow-up, too large for a control message, stored
   * by the gateway under a random `id` and taken (GETDEL) by the owner.
   */
  controlInput(id: string): string;
  /** True when `key` is a {@link Keys.controlInput} key of this deployment. */
  isControlInput(key: string): boolean;
  /** ZSET of live workers scored by last heartbeat (ms). */
  readonly workers: string;
  /** ZSET of org ids scored by creation time (ms); `default` is implicit and never stored. */
  readonly orgs: string;
  /** Org hash: `name`, `disabled` ("1"/"0"), `createdAt` (ISO). */
  org(org: string): string;
  /** API key hash: `org`, `role`, `hash` (hex SHA-256 of the secret), `name?`, `createdAt`, `expiresAt?`. */
  apiKey(keyId: string): string;
  /** SET of an org's API key ids. */
  orgApiKeys(org: string): string;
  /** Stream of an org's audit entries (field `d` = entry JSON), trimmed by count. */
  audit(org: string): string;
  /** ZSET of an org's running runs: run id -> holder expiry (ms); the org's concurrent-run quota. */
  orgRunning(org: string): string;
  /** ZSET of an org's queued runs: `<project>/<runId>` -> enqueue time (ms); the org's queue cap. */
  orgQueued(org: string): string;
  /** Prefix of the per-org request rate limit counters (`@fastify/rate-limit` Redis store). */
  readonly rateLimitPrefix: string;
  /** The org's rate limit counter: rateLimitPrefix + the limiter key `org:<org>` (60 s TTL). */
  rateLimitCounter(org: string): string;
}

/** Builds the key space for `prefix`. */
export function createKeys(prefix: string): Keys {
  const tag = (org: string, project: string) => `{${org}.${project}}`;
  const queuePrefix = `${prefix}:q`;
  return {
    prefix,
    queuePrefix,
    dispatchQueue: "dispatch",
    dispatchWaitList: `${queuePrefix}:dispatch:wait`,
    projectTag: tag,
    lease: (o, p) => `${prefix}:lease:${tag(o, p)}`,
    epoch: (o, p) => `${prefix}:epoch:${tag(o, p)}`,
    leaseClean: (o, p) => `${prefix}:lease-clean:${tag(o, p)}`,
    stream: (o, p, s) => `${prefix}:ev:${tag(o, p)}:${s}`,
    streamMeta: (o, p, s) => `${prefix}:evm:${tag(o, p)}:${s}`,
    streamChannel: (o, p, s) => `${prefix}:evc:${tag(o, p)}:${s}`,
    activityStream: (o, p) => `${prefix}:pev:${tag(o, p)}`,
    activityMeta: (o, p) => `${prefix}:pevm:${tag(o, p)}`,
    activityChannel: (o, p) => `${prefix}:pevc:${tag(o, p)}`,
    messages: (o, p, s) => `${prefix}:msgs:${tag(o, p)}:${s}`,
    pendingUi: (o, p, s) => `${prefix}:ui:${tag(o, p)}:${s}`,
    run: (o, p, r) => `${prefix}:run:${tag(o, p)}:${r}`,
    projectOpenRuns: (o, p) => `${prefix}:pruns:${tag(o, p)}`,
    sessionRuns: (o, p, s) => `${prefix}:sruns:${tag(o, p)}:${s}`,
    sessionSeq: (o, p, s) => `${prefix}:sseq:${tag(o, p)}:${s}`,
    sessionRunIds: (o, p, s) => `${prefix}:sallruns:${tag(o, p)}:${s}`,
    idempotency: (o, p, s, d) => `${prefix}:idem:${tag(o, p)}:${s}:${d}`,
    session: (o, p, s) => `${prefix}:session:${tag(o, p)}:${s}`,
    sessions: (o, p) => `${prefix}:sessions:${tag(o, p)}`,
    projectDeletion: (o, p, d) => `${prefix}:project-deletion:${tag(o, p)}:${d}`,
    projectDeleting: (o, p) => `${prefix}:project-deleting:${tag(o, p)}`,
    project: (o, p) => `${prefix}:project:${o}:${p}`,
    projects: (o) => `${prefix}:projects:${o}`,
    providers: (o) => `${prefix}:providers:${o}`,
    providerKeys: (o) => `${prefix}:provider-keys:${o}`,
    providerCredentials: (o) => `${prefix}:provider-creds:${o}`,
    providersRevision: (o) => `${prefix}:providers-rev:${o}`,
    catalog: `${prefix}:catalog`,
    catalogRevision: `${prefix}:catalog-rev`,
    ownerAnnounce: (o, p) => `${prefix}:owned:${tag(o, p)}`,
    workerInbox: (w) => `${prefix}:ctl:${w}`,
    gatewayReplies: (g) => `${prefix}:ctl-reply:${g}`,
    isGatewayReplies: (c) => c.startsWith(`${prefix}:ctl-reply:`),
    controlInput: (id) => `${prefix}:ctl-input:${id}`,
    isControlInput: (k) => k.startsWith(`${prefix}:ctl-input:`),
    workers: `${prefix}:workers`,
    orgs: `${prefix}:orgs`,
    org: (o) => `${prefix}:org:${o}`,
    apiKey: (k) => `${prefix}:apikey:${k}`,
    orgApiKeys: (o) => `${prefix}:org-keys:${o}`,
    audit: (o) => `${prefix}:audit:${o}`,
    orgRunning: (o) => `${prefix}:org-running:${o}`,
    orgQueued: (o) => `${prefix}:org-queued:${o}`,
    rateLimitPrefix: `${prefix}:rl:`,
    rateLimitCounter: (o) => `${prefix}:rl:org:${o}`,
  };
}
