/**
 * Gateway side of the control channel: sends a request to the worker that holds a project's
 * lease and waits for its reply. Requests go to the worker's inbox channel; replies come back on
 * this gateway's own reply channel (one subscriber connection per gateway, not per request).
 * While it waits, the client looks at the project's lease every {@link HOLDER_CHECK_MS}: a request
 * whose worker lost the project (it died, or another worker took over) ends as `lost` within a
 * few seconds instead of waiting out its whole timeout (a user `bash` may be waited for minutes).
 */
import { randomUUID } from "node:crypto";
import { ApiError } from "@pi-fleet/contracts";
import { CONTROL_NOT_OWNER, type Keys, type Redis } from "@pi-fleet/redis";

/** A control request as it travels to a worker. */
export interface ControlRequest {
  id: string;
  type: string;
  org: string;
  project: string;
  session?: string;
  replyTo: string;
  payload?: unknown;
}

/** A worker's reply. */
export interface ControlReply {
  id: string;
  ok: boolean;
  result?: unknown;
  error?: string;
}

/**
 * Outcome of {@link ControlClient.send}: `no-owner` when no worker holds the project; `lost` when
 * the worker asked stopped holding it before it answered (what the request did is unknown);
 * `shutdown` when this gateway is shutting down: `sent` — the worker got the request and goes on
 * with it, only its answer is not awaited; not `sent` — it had no owner to go to and was dropped.
 */
export type ControlOutcome =
  | { kind: "reply"; reply: ControlReply }
  | { kind: "no-owner" }
  | { kind: "timeout" }
  | { kind: "lost" }
  | { kind: "shutdown"; sent: boolean };

/**
 * How often a waiting request looks at the lease (ms). Two looks in a row that find another holder
 * (or none) end it as `lost`: a worker releasing while it finishes the request (a drain) still
 * gets one interval to answer.
 */
export const HOLDER_CHECK_MS = 1000;

/**
 * The longest a request waits for a project to get an owner (ms), whatever its own budget: a
 * command that may then run for minutes does not hold its client that long when no worker can
 * take the project.
 */
export const OWNER_WAIT_MAX_MS = 30_000;

/**
 * The API error of an outcome that ended without the worker's answer — `timeout` (503
 * PF_ERR_CONTROL_TIMEOUT), `lost`, `shutdown` (503 PF_ERR_SERVICE_UNAVAILABLE: what the request
 * did is unknown, a retry may repeat it) — or undefined for `reply` and `no-owner`, which each
 * caller answers its own way.
 */
export function unansweredError(outcome: ControlOutcome): ApiError | undefined {
  switch (outcome.kind) {
    case "timeout":
      return new ApiError("PF_ERR_CONTROL_TIMEOUT");
    case "lost":
      return new ApiError(
        "PF_ERR_SERVICE_UNAVAILABLE",
        "the worker running this request stopped owning the project before it answered; its outcome is unknown",
      );
    case "shutdown":
      return new ApiError(
        "PF_ERR_SERVICE_UNAVAILABLE",
        outcome.sent
          ? "this gateway is shutting down; the request goes on at its worker (read its outcome from the session)"
          : "this gateway is shutting down and did not send the request: send it again",
      );
    default:
      return undefined;
  }
}

/** Sends control requests and correlates replies. */
export class ControlClient {
  readonly gatewayId: string;
  private readonly redis: Redis;
  private readonly sub: Redis;
  private readonly keys: Keys;
  private readonly pending = new Map<string, (reply: ControlReply) => void>();
  private readonly ownerWaiters = new Map<string, Set<() => void>>();
  private readonly requestOwner: (org: string, project: string) => Promise<void>;
  /** The waits under way, each ended by its callback when waiting stops (shutdown). */
  private readonly stoppers = new Set<() => void>();
  private stopping = false;
  /**
   * Told the duration of each published request (metrics); outcome `reply`, `timeout`,
   * `no_receiver`, `lost` or `shutdown`.
   */
  onRoundTrip: (
    type: string,
    outcome: "reply" | "timeout" | "no_receiver" | "lost" | "shutdown",
    seconds: number,
  ) => void = () => {};

  private readonly holderCheckMs: number;
  private readonly ownerWaitMaxMs: number;

  /**
   * @param sub a dedicated subscriber connection (owned by this client)
   * @param requestOwner asks the fleet for an owner of a project (adds a dispatch job)
   * @param timing ms; defaults {@link HOLDER_CHECK_MS} and {@link OWNER_WAIT_MAX_MS}
   */
  constructor(
    redis: Redis,
    sub: Redis,
    keys: Keys,
    gatewayId: string,
    requestOwner: (org: string, project: string) => Promise<void>,
    timing: { holderCheckMs?: number; ownerWaitMaxMs?: number } = {},
  ) {
    this.holderCheckMs = timing.holderCheckMs ?? HOLDER_CHECK_MS;
    this.ownerWaitMaxMs = timing.ownerWaitMaxMs ?? OWNER_WAIT_MAX_MS;
    this.redis = redis;
    this.sub = sub;
    this.keys = keys;
    this.gatewayId = gatewayId;
    this.requestOwner = requestOwner;
    this.sub.on("message", (channel: string, message: string) => {
      const waiters = this.ownerWaiters.get(channel);
      if (waiters) {
        for (const wake of waiters) wake();
        return;
      }
      try {
        const reply = JSON.parse(message) as ControlReply;
        this.pending.get(reply.id)?.(reply);
      } catch {
        // not ours / malformed: ignore
      }
    });
  }

  /** Subscribes to this gateway's reply channel. */
  async start(): Promise<void> {
    await this.sub.subscribe(this.keys.gatewayReplies(this.gatewayId));
  }

  /**
   * Sends `type` to the project's lease holder and waits up to `timeoutMs` (in all) for the
   * reply. With `ensureOwner`, a project without an owner gets one on demand, and a holder that
   * answers it is letting the project go ({@link CONTROL_NOT_OWNER}: idle release, drain) is
   * asked again through its next owner.
   * @throws only when Redis itself fails
   */
  async send(
    org: string,
    project: string,
    type: string,
    fields: { session?: string; payload?: unknown } = {},
    timeoutMs = 5000,
    ensureOwner = false,
  ): Promise<ControlOutcome> {
    const deadline = performance.now() + timeoutMs;
    let holder = await this.redis.get(this.keys.lease(org, project));
    // While shutting down a request still goes to its holder (a deletion's forget_session must
    // reach the worker), but nobody waits for an owner or an answer.
    if (!holder && ensureOwner && !this.stopping) {
      holder = await this.awaitOwner(org, project, Math.min(timeoutMs, this.ownerWaitMaxMs));
    }
    for (;;) {
      if (!holder) return this.stopping ? { kind: "shutdown", sent: false } : { kind: "no-owner" };
      const outcome = await this.sendTo(holder, org, project, type, fields, deadline - performance.now());
      const left = deadline - performance.now();
      if (!ensureOwner || left <= 0 || outcome.kind !== "reply" || outcome.reply.ok) return outcome;
      if (outcome.reply.error !== CONTROL_NOT_OWNER) return outcome;
      // The holder is letting the project go (idle release, drain): ask its next owner.
      holder = await this.awaitOwner(org, project, Math.min(left, this.ownerWaitMaxMs), holder);
    }
  }

  /** One request to the worker of lease token `holder`; see {@link send}. */
  private async sendTo(
    holder: string,
    org: string,
    project: string,
    type: string,
    fields: { session?: string; payload?: unknown },
    timeoutMs: number,
  ): Promise<ControlOutcome> {
    const workerId = holder.slice(0, holder.lastIndexOf(":"));
    const request: ControlRequest = {
      id: randomUUID(),
      type,
      org,
      project,
      replyTo: this.keys.gatewayReplies(this.gatewayId),
      ...fields,
    };
    const replied = new Promise<ControlReply>((resolve) => this.pending.set(request.id, resolve));
    const sentAt = performance.now();
    const took = () => (performance.now() - sentAt) / 1000;
    try {
      const receivers = await this.redis.publish(this.keys.workerInbox(workerId), JSON.stringify(request));
      if (receivers === 0) {
        this.onRoundTrip(type, "no_receiver", took());
        return { kind: "no-owner" };
      }
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), timeoutMs);
      });
      const watch = this.watchHolder(org, project, holder);
      const stop = this.stopSignal();
      const result = await Promise.race([replied, timeout, watch.lost, stop.stopped]);
      clearTimeout(timer);
      watch.stop();
      stop.release();
      if (typeof result === "string") {
        this.onRoundTrip(type, result, took());
        return result === "shutdown" ? { kind: result, sent: true } : { kind: result };
      }
      this.onRoundTrip(type, "reply", took());
      return { kind: "reply", reply: result };
    } finally {
      this.pending.delete(request.id);
    }
  }

  /**
   * Looks at the project's lease every `holderCheckMs` (the first look one interval in, so
   * a prompt reply costs nothing) until stopped; `lost` resolves once two looks in a row found a
   * holder other than `holder` (or none). A look that fails (Redis) counts as neither.
   */
  private watchHolder(
    org: string,
    project: string,
    holder: string,
  ): { lost: Promise<"lost">; stop: () => void } {
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    let misses = 0;
    const lost = new Promise<"lost">((resolve) => {
      const look = async (): Promise<void> => {
        const now: string | null | undefined = await this.redis
          .get(this.keys.lease(org, project))
          .catch(() => undefined);
        if (stopped) return;
        if (now !== undefined) misses = now === holder ? 0 : misses + 1;
        if (misses >= 2) resolve("lost");
        else timer = setTimeout(() => void look(), this.holderCheckMs);
      };
      timer = setTimeout(() => void look(), this.holderCheckMs);
    });
    return {
      lost,
      stop: () => {
        stopped = true;
        clearTimeout(timer);
      },
    };
  }

  /**
   * Gets the project an owner on demand: listens for the owner's announcement, signals dispatch,
   * and resolves with the lease holder's token (null if none appeared within `timeoutMs`).
   * @param notHolder a lease token that does not count (an owner letting the project go)
   */
  private async awaitOwner(
    org: string,
    project: string,
    timeoutMs: number,
    notHolder?: string,
  ): Promise<string | null> {
    const channel = this.keys.ownerAnnounce(org, project);
    let wake: () => void = () => {};
    const announced = new Promise<void>((resolve) => {
      wake = resolve;
    });
    let waiters = this.ownerWaiters.get(channel);
    if (!waiters) {
      waiters = new Set();
      this.ownerWaiters.set(channel, waiters);
      await this.sub.subscribe(channel);
    }
    waiters.add(wake);
    let timer: NodeJS.Timeout | undefined;
    const stop = this.stopSignal();
    try {
      await this.requestOwner(org, project);
      const holder = await this.redis.get(this.keys.lease(org, project));
      if (holder && holder !== notHolder) return holder;
      await Promise.race([
        announced,
        stop.stopped,
        new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs))),
      ]);
      const next = await this.redis.get(this.keys.lease(org, project));
      return next === notHolder ? null : next;
    } finally {
      clearTimeout(timer);
      stop.release();
      waiters.delete(wake);
      if (waiters.size === 0) {
        this.ownerWaiters.delete(channel);
        await this.sub.unsubscribe(channel).catch(() => undefined);
      }
    }
  }

  /**
   * A promise that resolves `"shutdown"` when waiting stops (at once if it already has). Per wait,
   * released when the wait ends: a promise pending for the process's life would keep every race
   * it joined, and with it each reply, alive.
   */
  private stopSignal(): { stopped: Promise<"shutdown">; release: () => void } {
    let stop: () => void = () => {};
    const stopped = new Promise<"shutdown">((resolve) => {
      stop = () => resolve("shutdown");
    });
    if (this.stopping) stop();
    else this.stoppers.add(stop);
    return { stopped, release: () => this.stoppers.delete(stop) };
  }

  /**
   * Ends every wait at once as `shutdown` (the gateway is shutting down: its HTTP server waits for
   * in-flight requests, and a command may be waited for minutes). Later requests still go to their
   * project's holder but are not waited for; one without a holder is dropped.
   */
  stopWaiting(): void {
    this.stopping = true;
    for (const stop of this.stoppers) stop();
    this.stoppers.clear();
  }

  /** Closes the reply subscription (waits still under way end as `shutdown`). */
  async close(): Promise<void> {
    this.stopWaiting();
    await this.sub.quit().catch(() => this.sub.disconnect());
  }
}
