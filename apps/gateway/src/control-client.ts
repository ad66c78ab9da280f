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
 * the worker asked stopped holding it before it answered (what the request did is unknown).
 */
export type ControlOutcome =
  | { kind: "reply"; reply: ControlReply }
  | { kind: "no-owner" }
  | { kind: "timeout" }
  | { kind: "lost" };

/**
 * How often a waiting request looks at the lease (ms). Two looks in a row that find another holder
 * (or none) end it as `lost`: a worker releasing while it finishes the request (a drain) still
 * gets one interval to answer.
 */
export const HOLDER_CHECK_MS = 1000;

/** The API error of a `lost` outcome: 503, the request's effect unknown (a retry may repeat it). */
export function workerLostError(): ApiError {
  return new ApiError(
    "PF_ERR_SERVICE_UNAVAILABLE",
    "the worker running this request stopped owning the project before it answered; its outcome is unknown",
  );
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
  /**
   * Told the duration of each published request (metrics); outcome `reply`, `timeout`,
   * `no_receiver` or `lost`.
   */
  onRoundTrip: (
    type: string,
    outcome: "reply" | "timeout" | "no_receiver" | "lost",
    seconds: number,
  ) => void = () => {};

  /**
   * @param sub a dedicated subscriber connection (owned by this client)
   * @param requestOwner asks the fleet for an owner of a project (adds a dispatch job)
   */
  constructor(
    redis: Redis,
    sub: Redis,
    keys: Keys,
    gatewayId: string,
    requestOwner: (org: string, project: string) => Promise<void>,
  ) {
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
    if (!holder && ensureOwner) holder = await this.awaitOwner(org, project, timeoutMs);
    for (;;) {
      if (!holder) return { kind: "no-owner" };
      const outcome = await this.sendTo(holder, org, project, type, fields, deadline - performance.now());
      const left = deadline - performance.now();
      if (!ensureOwner || left <= 0 || outcome.kind !== "reply" || outcome.reply.ok) return outcome;
      if (outcome.reply.error !== CONTROL_NOT_OWNER) return outcome;
      // The holder is letting the project go (idle release, drain): ask its next owner.
      holder = await this.awaitOwner(org, project, left, holder);
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
      const result = await Promise.race([replied, timeout, watch.lost]);
      clearTimeout(timer);
      watch.stop();
      if (typeof result === "string") {
        this.onRoundTrip(type, result, took());
        return { kind: result };
      }
      this.onRoundTrip(type, "reply", took());
      return { kind: "reply", reply: result };
    } finally {
      this.pending.delete(request.id);
    }
  }

  /**
   * Looks at the project's lease every {@link HOLDER_CHECK_MS} (the first look one interval in, so
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
        else timer = setTimeout(() => void look(), HOLDER_CHECK_MS);
      };
      timer = setTimeout(() => void look(), HOLDER_CHECK_MS);
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
    try {
      await this.requestOwner(org, project);
      const holder = await this.redis.get(this.keys.lease(org, project));
      if (holder && holder !== notHolder) return holder;
      await Promise.race([announced, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      const next = await this.redis.get(this.keys.lease(org, project));
      return next === notHolder ? null : next;
    } finally {
      clearTimeout(timer);
      waiters.delete(wake);
      if (waiters.size === 0) {
        this.ownerWaiters.delete(channel);
        await this.sub.unsubscribe(channel).catch(() => undefined);
      }
    }
  }

  /** Closes the reply subscription. */
  async close(): Promise<void> {
    await this.sub.quit().catch(() => this.sub.disconnect());
  }
}
