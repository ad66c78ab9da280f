/**
 * The session event log in Redis: one stream per session plus its run records. All writes go
 * through Lua scripts so that a run's state and the event reporting it change together, and so
 * that a worker without the project lease cannot write at all (fencing, ARCHITECTURE.md §3).
 */
import { randomBytes } from "node:crypto";
import type { RunStatus, RunUsage, WireEvent } from "@pi-fleet/contracts";
import { TERMINAL_RUN_STATUSES } from "@pi-fleet/contracts";
import type { Keys, Redis } from "@pi-fleet/redis";
import { streamScript as script } from "./lua-scripts.ts";

const APPEND = script("append-events", 5);
const ENQUEUE = script("enqueue-run", 12);
const TRANSITION = script("transition-run", 9);
const START = script("start-run", 10);

/** Identifies one session stream. */
export interface SessionRef {
  org: string;
  project: string;
  session: string;
}

/** Identifies a project's activity stream. */
export interface ActivityRef {
  org: string;
  project: string;
  activity: true;
}

/** Any stream a client can subscribe to. */
export type StreamRef = SessionRef | ActivityRef;

/** The Redis names behind one stream. */
export interface StreamAddress {
  stream: string;
  meta: string;
  channel: string;
}

/** One stream entry: its offset and the wire event JSON it holds. */
export interface StreamEntry {
  id: string;
  /** Wire event JSON, exactly as stored (never re-serialized on the read path). */
  data: string;
}

/** Thrown when a fenced write is rejected because the caller no longer holds the lease. */
export class FencedError extends Error {
  override readonly name = "FencedError";
}

/** The project's or the org's cap on open runs is reached (`enqueueRun` wrote nothing). */
export class QueueFullError extends Error {
  override readonly name = "QueueFullError";
  /** Whose cap: the project's (exact count) or the org's (an index the caller may repair). */
  readonly scope: "project" | "org";

  constructor(scope: "project" | "org", message: string) {
    super(message);
    this.scope = scope;
  }
}

/** Thrown when a run or session record a script needs does not exist. */
export class MissingRecordError extends Error {
  override readonly name = "MissingRecordError";
}

/** A run record as stored in Redis (hash `run`), decoded. Times are epoch ms. */
export interface RunRecord {
  id: string;
  sessionId: string;
  seq: number;
  status: RunStatus;
  position: number;
  createdAt: number;
  updatedAt: number;
  startedAt?: number;
  endedAt?: number;
  /** Offset of the run's `run_queued` entry. */
  queuedOffset: string;
  startOffset?: string;
  endOffset?: string;
  usage?: RunUsage;
  error?: string;
  reason?: string;
  workerId?: string;
  epoch?: number;
}

/** Outcome of {@link EventLog.enqueueRun}. */
export interface EnqueueResult {
  created: boolean;
  runId: string;
  /** For a new run: offset of `run_queued`, its per-session sequence and queue position. */
  queuedOffset?: string;
  seq?: number;
  position?: number;
}

/** Fields a state change may set on the run record besides the state. */
export interface RunFields {
  usage?: RunUsage;
  error?: string;
  reason?: string;
  workerId?: string;
  epoch?: number;
}

function toArgs(fields: RunFields): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    out.push(k, typeof v === "object" ? JSON.stringify(v) : String(v));
  }
  return out;
}

function isFenced(err: unknown): boolean {
  return err instanceof Error && err.message.includes("FENCED");
}

/** Outcomes worth counting (metrics). Every hook is optional and must not throw. */
export interface EventLogObserver {
  /** A run reached a terminal state through this EventLog. */
  runEnded?(state: RunStatus): void;
  /** A fenced write was refused: the caller no longer holds the project lease. */
  fenced?(op: "append" | "start" | "transition"): void;
}

/** Reads and writes session streams and run records for one key space. */
export class EventLog {
  readonly redis: Redis;
  readonly keys: Keys;
  readonly maxLen: number;
  readonly maxAgeMs: number;
  /** Told about terminal transitions and fenced writes (the process's metrics). */
  observer: EventLogObserver = {};
  /** `<maxLen>:<maxAgeMs>`, the retention argument of every append script. */
  readonly retention: string;

  /**
   * @param redis a `command` connection
   * @param maxLen approximate MAXLEN per session stream (`PI_FLEET_STREAM_MAXLEN`)
   * @param maxAgeMs entries older than this are trimmed on the next append (0 = no age limit;
   *   `PI_FLEET_STREAM_MAX_AGE_MS`)
   */
  constructor(redis: Redis, keys: Keys, maxLen: number, maxAgeMs = 0) {
    this.redis = redis;
    this.keys = keys;
    this.maxLen = maxLen;
    this.maxAgeMs = maxAgeMs;
    this.retention = `${maxLen}:${maxAgeMs}`;
  }

  /** The Redis names of a session stream or a project activity stream. */
  address(ref: StreamRef): StreamAddress {
    const { org, project } = ref;
    if ("activity" in ref) {
      return {
        stream: this.keys.activityStream(org, project),
        meta: this.keys.activityMeta(org, project),
        channel: this.keys.activityChannel(org, project),
      };
    }
    return {
      stream: this.keys.stream(org, project, ref.session),
      meta: this.keys.streamMeta(org, project, ref.session),
      channel: this.keys.streamChannel(org, project, ref.session),
    };
  }

  private streamKeys(ref: SessionRef): StreamAddress {
    return this.address(ref);
  }

  /** KEYS of the run-state scripts (start-run, transition-run), in their documented order. */
  private runScriptKeys(ref: SessionRef, runId: string): string[] {
    const { org, project, session } = ref;
    const k = this.streamKeys(ref);
    return [
      this.keys.lease(org, project),
      this.keys.run(org, project, runId),
      this.keys.sessionRuns(org, project, session),
      k.stream,
      k.meta,
      this.keys.session(org, project, session),
      this.keys.activityStream(org, project),
      this.keys.activityMeta(org, project),
    ];
  }

  /**
   * Appends events to the session stream; `history[i]`, when given, is mirrored into the
   * session's message list (the persisted history served by `GET …/sessions/{id}`).
   * @param token lease token `<worker>:<epoch>`, or "" for an unfenced write
   * @returns the entry ids in order
   * @throws FencedError when `token` no longer holds the project lease (nothing was written);
   *   MissingRecordError when the session was deleted (nothing was written: its stream stays gone)
   */
  async append(
    ref: SessionRef,
    token: string,
    events: readonly { event: WireEvent | string; history?: unknown }[],
  ): Promise<string[]> {
    if (events.length === 0) return [];
    const k = this.streamKeys(ref);
    const args: (string | number)[] = [token, this.retention, k.channel, randomBytes(8).toString("hex")];
    for (const e of events) {
      args.push(typeof e.event === "string" ? e.event : JSON.stringify(e.event));
      args.push(e.history === undefined ? "" : JSON.stringify(e.history));
    }
    const keys = [
      this.keys.lease(ref.org, ref.project),
      k.stream,
      k.meta,
      this.keys.messages(ref.org, ref.project, ref.session),
      this.keys.session(ref.org, ref.project, ref.session),
    ];
    try {
      return (await APPEND.run(this.redis, keys, args)) as string[];
    } catch (err) {
      throw this.appendError(err);
    }
  }

  /** The typed error of a failed APPEND: FencedError, MissingRecordError, else `err` itself. */
  private appendError(err: unknown): unknown {
    if (isFenced(err)) {
      this.observer.fenced?.("append");
      return new FencedError((err as Error).message);
    }
    if (err instanceof Error && err.message.includes("NOSESSION")) {
      return new MissingRecordError("the session was deleted");
    }
    return err;
  }

  /**
   * Records a queued run and appends `run_queued` (gateway side, unfenced), checking the project's
   * and the org's caps and adding the run to the org's open-runs index (`Keys.orgQueued`, member
   * `<project>/<runId>`; terminal transitions remove it) in the same script.
   * @param idempotencyDigest digest of the client's `Idempotency-Key`, if any (24 h window)
   * @throws MissingRecordError when the session does not exist
   * @throws QueueFullError when the project has `maxOpenRuns` open runs, or the org index counts
   *   `maxOrgOpenRuns` (scope "org": the index may hold stale members, see {@link orgOpenRuns});
   *   nothing written
   */
  async enqueueRun(
    ref: SessionRef,
    runId: string,
    opts: {
      idempotencyDigest?: string;
      firstMessage: string;
      promptChars: number;
      now?: number;
      /** Most open (queued + running) runs the project may have; 0/absent = no cap. */
      maxOpenRuns?: number;
      /** Most open runs the org's index may count (see {@link orgOpenRuns}); 0/absent = no cap. */
      maxOrgOpenRuns?: number;
    },
  ): Promise<EnqueueResult> {
    const { org, project, session } = ref;
    const k = this.streamKeys(ref);
    const now = opts.now ?? Date.now();
    const keys = [
      this.keys.idempotency(org, project, session, opts.idempotencyDigest ?? "none"),
      this.keys.sessionSeq(org, project, session),
      this.keys.run(org, project, runId),
      this.keys.sessionRuns(org, project, session),
      k.stream,
      k.meta,
      this.keys.session(org, project, session),
      this.keys.activityStream(org, project),
      this.keys.activityMeta(org, project),
      this.keys.projectOpenRuns(org, project),
      this.keys.orgQueued(org),
      this.keys.sessionRunIds(org, project, session),
    ];
    const args = [
      runId,
      opts.idempotencyDigest ? "1" : "0",
      24 * 3600,
      this.retention,
      k.channel,
      randomBytes(8).toString("hex"),
      now,
      session,
      opts.firstMessage,
      opts.promptChars,
      this.keys.activityChannel(org, project),
      opts.maxOpenRuns ?? 0,
      opts.maxOrgOpenRuns ?? 0,
      `${project}/${runId}`,
    ];
    let res: unknown[];
    try {
      res = (await ENQUEUE.run(this.redis, keys, args)) as unknown[];
    } catch (err) {
      if (err instanceof Error && err.message.includes("NOSESSION"))
        throw new MissingRecordError("no such session");
      if (err instanceof Error && err.message.includes("QUEUEFULL")) {
        throw new QueueFullError("project", `the project has ${opts.maxOpenRuns} queued or running runs`);
      }
      if (err instanceof Error && err.message.includes("ORGFULL")) {
        throw new QueueFullError("org", `the org has ${opts.maxOrgOpenRuns} queued or running runs`);
      }
      throw err;
    }
    if (res[0] === 0) return { created: false, runId: String(res[1]) };
    return {
      created: true,
      runId: String(res[1]),
      queuedOffset: String(res[2]),
      seq: Number(res[3]),
      position: Number(res[4]),
    };
  }

  /**
   * Changes a run's state if it is currently in one of `from`, appending `event` atomically.
   * @returns the new entry id, or `{rejected: currentState}` when the run was not in `from`
   * @throws FencedError when `token` no longer holds the lease; MissingRecordError if no record
   */
  async transitionRun(
    ref: SessionRef,
    runId: string,
    token: string,
    from: readonly RunStatus[],
    to: RunStatus,
    event: WireEvent,
    fields: RunFields = {},
  ): Promise<{ offset: string } | { rejected: RunStatus }> {
    const { org, project } = ref;
    const k = this.streamKeys(ref);
    const keys = [...this.runScriptKeys(ref, runId), this.keys.projectOpenRuns(org, project)];
    const terminal = TERMINAL_RUN_STATUSES.includes(to);
    const args = [
      token,
      this.retention,
      k.channel,
      randomBytes(8).toString("hex"),
      from.join(","),
      to,
      JSON.stringify(event),
      Date.now(),
      terminal ? "1" : "0",
      this.keys.activityChannel(org, project),
      event.type,
      ...toArgs(fields),
    ];
    let res: unknown[];
    try {
      res = (await TRANSITION.run(this.redis, keys, args)) as unknown[];
    } catch (err) {
      if (isFenced(err)) {
        this.observer.fenced?.("transition");
        throw new FencedError((err as Error).message);
      }
      if (err instanceof Error && err.message.includes("NORUN")) throw new MissingRecordError("no such run");
      throw err;
    }
    if (res[0] !== 1) return { rejected: String(res[1]) as RunStatus };
    if (terminal) {
      this.observer.runEnded?.(to);
      // The org-wide index lives in another slot: best effort here, repaired by the gateway's
      // queue-cap check (orgOpenRuns) if this is lost.
      await this.redis.zrem(this.keys.orgQueued(org), `${project}/${runId}`).catch(() => undefined);
    }
    return { offset: String(res[1]) };
  }

  /**
   * Starts a queued run if it is the oldest open run of its session and its org is below its
   * concurrent-run quota: marks it `running`, takes the run's quota slot and appends `event`
   * (`run_started`) in one fenced call.
   * @param quota the org's concurrent-run cap (`PI_FLEET_ORG_MAX_RUNS`, 0 = none) and how long a
   *   slot holder counts without a refresh (ms); the slot is the run id in `Keys.orgRunning`, the
   *   semaphore RunQuota (libs/leases) refreshes and releases
   * @returns `{offset}` when started; `{notHead: true}` when an older run of the session is still
   *   open (wait and retry); `{throttled: true}` when the org runs its quota already (retry later);
   *   `{orgDisabled: true}` when an operator disabled the org (the caller cancels the run);
   *   `{rejected: state}` when the run is no longer queued
   * @throws FencedError when `token` no longer holds the lease; MissingRecordError when the run's
   *   record or its session's record (a deleted session) is gone
   */
  async startRun(
    ref: SessionRef,
    runId: string,
    token: string,
    event: WireEvent,
    fields: RunFields = {},
    quota: { capacity: number; holderTtlMs: number } = { capacity: 0, holderTtlMs: 0 },
  ): Promise<
    | { offset: string }
    | { notHead: true }
    | { throttled: true }
    | { orgDisabled: true }
    | { rejected: RunStatus }
  > {
    const { org, project } = ref;
    const k = this.streamKeys(ref);
    const keys = [...this.runScriptKeys(ref, runId), this.keys.orgRunning(org), this.keys.org(org)];
    const args = [
      token,
      this.retention,
      k.channel,
      randomBytes(8).toString("hex"),
      JSON.stringify(event),
      Date.now(),
      this.keys.activityChannel(org, project),
      quota.capacity,
      quota.holderTtlMs,
      ...toArgs(fields),
    ];
    let res: unknown[];
    try {
      res = (await START.run(this.redis, keys, args)) as unknown[];
    } catch (err) {
      if (isFenced(err)) {
        this.observer.fenced?.("start");
        throw new FencedError((err as Error).message);
      }
      if (err instanceof Error && err.message.includes("NORUN")) throw new MissingRecordError("no such run");
      if (err instanceof Error && err.message.includes("NOSESSION")) {
        throw new MissingRecordError("no such session");
      }
      throw err;
    }
    if (res[0] === 1) return { offset: String(res[1]) };
    if (res[1] === "not_head") return { notHead: true };
    if (res[1] === "quota") return { throttled: true };
    if (res[1] === "org_disabled") return { orgDisabled: true };
    return { rejected: String(res[1]) as RunStatus };
  }

  /** Reads a run record; undefined when it does not exist. */
  async getRun(org: string, project: string, runId: string): Promise<RunRecord | undefined> {
    const h = await this.redis.hgetall(this.keys.run(org, project, runId));
    if (!h.id) return undefined;
    const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
    return {
      id: h.id,
      sessionId: h.sessionId ?? "",
      seq: Number(h.seq),
      status: h.status as RunStatus,
      position: Number(h.position ?? 0),
      createdAt: Number(h.createdAt),
      updatedAt: Number(h.updatedAt),
      startedAt: num(h.startedAt),
      endedAt: num(h.endedAt),
      queuedOffset: h.queuedOffset ?? "",
      startOffset: h.startOffset,
      endOffset: h.endOffset,
      usage: h.usage ? (JSON.parse(h.usage) as RunUsage) : undefined,
      error: h.error,
      reason: h.reason,
      workerId: h.workerId,
      epoch: num(h.epoch),
    };
  }

  /** Ids of the session's runs that are queued or running, in sequence order. */
  async openRuns(ref: SessionRef): Promise<string[]> {
    return this.redis.zrange(this.keys.sessionRuns(ref.org, ref.project, ref.session), "0", "-1");
  }

  /**
   * Reads up to `count` entries strictly after `after` ("0" = from the start).
   * Source: Redis `XRANGE key (<after> + COUNT n` (exclusive start needs Redis ≥ 6.2).
   */
  async range(ref: StreamRef, after: string, count: number): Promise<StreamEntry[]> {
    const key = this.address(ref).stream;
    const start = after === "0" || after === "0-0" ? "-" : `(${after}`;
    const rows = await this.redis.xrange(key, start, "+", "COUNT", String(count));
    return rows.map(([id, fields]) => ({ id, data: fieldValue(fields) }));
  }

  /**
   * One consistent read (MULTI/EXEC) for resuming: up to `count` entries strictly after `after`,
   * whether `after` itself is still an entry, and the first retained entry. Trimming only removes
   * from the head, so entries following an existing entry are complete; when `after` is gone the
   * caller compares it with `first` to tell a synthetic "just before" cursor from a trimmed gap.
   */
  async readPage(
    ref: StreamRef,
    after: string,
    count: number,
  ): Promise<{ entries: StreamEntry[]; afterExists: boolean; first?: string; trimmed: boolean }> {
    const key = this.address(ref).stream;
    const start = after === "0" || after === "0-0" ? "-" : `(${after}`;
    const res = await this.redis
      .multi()
      .xrange(key, start, "+", "COUNT", String(count))
      .xrange(key, after === "0" ? "0-0" : after, after === "0" ? "0-0" : after)
      .xrange(key, "-", "+", "COUNT", "1")
      .call("XINFO", "STREAM", key)
      .exec();
    if (!res) throw new Error("stream read aborted");
    for (const [err] of res.slice(0, 3)) if (err) throw err;
    type Rows = [string, string[]][];
    const rows = (res[0]?.[1] ?? []) as Rows;
    const exact = (res[1]?.[1] ?? []) as Rows;
    const firstRow = ((res[2]?.[1] ?? []) as Rows)[0];
    // XINFO fails on a missing key: nothing was ever trimmed from a stream that does not exist.
    const info = res[3]?.[0] ? [] : ((res[3]?.[1] as unknown[]) ?? []);
    const field = (name: string) => {
      const i = info.indexOf(name);
      return i >= 0 ? Number(info[i + 1]) : 0;
    };
    return {
      entries: rows.map(([id, fields]) => ({ id, data: fieldValue(fields) })),
      afterExists: start === "-" || exact.length > 0,
      first: firstRow?.[0],
      trimmed: field("entries-added") > field("length"),
    };
  }

  /**
   * What the stream holds now: first retained entry id, last written id (from the meta hash,
   * which survives trimming), whether entries were ever trimmed (`entries-added > length`) and the
   * stream's epoch (random, set on its first write; a new epoch means the stream was recreated).
   */
  async bounds(ref: StreamRef): Promise<{ first?: string; last?: string; trimmed: boolean; epoch?: string }> {
    const { stream: key, meta } = this.address(ref);
    const [info, [last, epochValue]] = await Promise.all([
      this.redis.call("XINFO", "STREAM", key).catch(() => undefined),
      this.redis.hmget(meta, "last", "epoch"),
    ]);
    const epoch = epochValue ?? undefined;
    if (!Array.isArray(info)) return { last: last ?? undefined, trimmed: false, epoch };
    const map = new Map<string, unknown>();
    for (let i = 0; i + 1 < info.length; i += 2) map.set(String(info[i]), info[i + 1]);
    const length = Number(map.get("length") ?? 0);
    const added = Number(map.get("entries-added") ?? length);
    const firstEntry = map.get("first-entry");
    const first = Array.isArray(firstEntry) ? String(firstEntry[0]) : undefined;
    return { first, last: last ?? undefined, trimmed: added > length, epoch };
  }

  /**
   * The `createdAt` of the record a stream belongs to: the session's (registry hash `session`) for
   * a session stream, the project's for its activity stream; undefined when it does not exist. It
   * tells two records of the same id apart (a project deleted and created again). One HGET.
   */
  async recordCreatedAt(ref: StreamRef): Promise<string | undefined> {
    const key =
      "activity" in ref
        ? this.keys.project(ref.org, ref.project)
        : this.keys.session(ref.org, ref.project, ref.session);
    return (await this.redis.hget(key, "createdAt")) ?? undefined;
  }

  /**
   * Open (queued or running) runs of an org. With `repair`, members whose run record is gone or
   * ended (a removal lost to a crash between the transition and the index update) are dropped
   * first, so the count is exact; that costs one read per member, so callers repair only when the
   * plain count reaches their cap.
   */
  async orgOpenRuns(org: string, opts: { repair?: boolean } = {}): Promise<number> {
    const key = this.keys.orgQueued(org);
    if (!opts.repair) return this.redis.zcard(key);
    const members = await this.redis.zrange(key, "0", "-1");
    const pipeline = this.redis.pipeline();
    for (const m of members) {
      const [project, runId] = m.split("/") as [string, string];
      pipeline.hget(this.keys.run(org, project, runId), "status");
    }
    const states = (await pipeline.exec()) ?? [];
    const stale = members.filter((_m, i) => {
      const status = states[i]?.[1];
      return status !== "queued" && status !== "running";
    });
    if (stale.length > 0) await this.redis.zrem(key, ...stale);
    return members.length - stale.length;
  }

  /**
   * Deletes a session's stream, meta, message history, counters, run records and any stray hash
   * left under its record's key (session deletion; the registry record goes first). A run still
   * writing afterwards finds neither its record (transitions: NORUN) nor the session (appends:
   * NOSESSION), so nothing comes back.
   */
  async deleteSessionData(ref: SessionRef): Promise<void> {
    const { org, project, session } = ref;
    const [open, all] = await Promise.all([
      this.redis.zrange(this.keys.sessionRuns(org, project, session), "0", "-1"),
      this.redis.zrange(this.keys.sessionRunIds(org, project, session), "0", "-1"),
    ]);
    if (open.length > 0) {
      await this.redis.zrem(this.keys.projectOpenRuns(org, project), ...open);
      await this.redis.zrem(this.keys.orgQueued(org), ...open.map((r) => `${project}/${r}`));
    }
    for (let i = 0; i < all.length; i += 500) {
      await this.redis.del(...all.slice(i, i + 500).map((r) => this.keys.run(org, project, r)));
    }
    await this.redis.del(
      // A stray hash a late write may have left (the record itself went with the deletion's script).
      this.keys.session(org, project, session),
      this.keys.stream(org, project, session),
      this.keys.streamMeta(org, project, session),
      this.keys.messages(org, project, session),
      this.keys.sessionRuns(org, project, session),
      this.keys.sessionSeq(org, project, session),
      this.keys.sessionRunIds(org, project, session),
      this.keys.pendingUi(org, project, session),
    );
  }
}

function fieldValue(fields: string[]): string {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === "d") return fields[i + 1] ?? "";
  return "";
}
