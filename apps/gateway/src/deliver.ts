/**
 * Delivery of user input into a session's running run (steer / follow-up), shared by
 * `POST …/steer`, `…/follow_up` and `POST …/prompt` with `streamingBehavior`. The message goes
 * over the control channel to the worker holding the project's lease; when the session is idle
 * (or its run ended meanwhile) it becomes a queued prompt, as in pi.
 *
 * Images do not travel in the control message itself: they can reach tens of MB, and a Redis
 * pub/sub message that large overflows the subscriber's output buffer (Redis'
 * `client-output-buffer-limit pubsub`, 32 MB hard by default) and disconnects the worker's inbox.
 * They are stored in a short-lived key (`<prefix>:ctl-input:<uuid>`) that the worker takes with
 * GETDEL; the message carries the key.
 */
import { randomUUID } from "node:crypto";
import { unansweredError } from "./control-client.ts";
import { enqueuePrompt, type QueuedRun } from "./enqueue.ts";
import type { UserInput } from "./prompt-input.ts";
import type { GatewayServices } from "./services.ts";

/** How long stored images wait for the worker (ms); it takes them as soon as the message arrives. */
const STORED_INPUT_TTL_MS = 60_000;

/** Where a session's input went: into the running run, or a new queued run. */
export type DeliverOutcome =
  | {
      delivered: "steer" | "followUp";
      /** The running run the message joined. */
      runId: string;
      /** The session stream's last offset before the delivery (`0` when empty): subscribe from it. */
      offset: string;
      /** Always 0: the message is part of the running run. */
      position: 0;
    }
  | ({ delivered: "prompt" } & QueuedRun);

/**
 * Delivers `input` into the session's running run as a steer or follow-up; when no run is active
 * (the caller's `activeRun` is unset, or the worker found the session idle) queues it as a prompt.
 * The session must exist (the caller checked it, see `requireSession`).
 * @param activeRun the session record's running run, if any
 * @param idempotencyKey applies only when the input becomes a queued prompt
 * @throws ApiError 503 `PF_ERR_CONTROL_TIMEOUT` when the owning worker did not answer in time;
 *   the errors of {@link enqueuePrompt}
 */
export async function deliverInput(
  s: GatewayServices,
  org: string,
  projectId: string,
  sessionId: string,
  activeRun: string | undefined,
  input: UserInput,
  mode: "steer" | "followUp",
  idempotencyKey?: string,
): Promise<DeliverOutcome> {
  if (activeRun) {
    const delivered = await deliverToRun(s, org, projectId, sessionId, input, mode);
    if (delivered) return { delivered: mode, ...delivered, position: 0 };
  }
  // Idle (or the run ended meanwhile): the message becomes a prompt.
  const run = await enqueuePrompt(s, org, projectId, sessionId, input, idempotencyKey);
  return { delivered: "prompt", ...run };
}

/** Sends the input to the owner; the run it joined, or undefined when there was none to join. */
async function deliverToRun(
  s: GatewayServices,
  org: string,
  projectId: string,
  sessionId: string,
  input: UserInput,
  mode: "steer" | "followUp",
): Promise<{ runId: string; offset: string } | undefined> {
  const meta = s.events.address({ org, project: projectId, session: sessionId }).meta;
  const offset = (await s.redis.hget(meta, "last")) ?? "0";
  let imagesKey: string | undefined;
  if (input.images?.length) {
    imagesKey = s.keys.controlInput(randomUUID());
    await s.redis.set(imagesKey, JSON.stringify(input.images), "PX", STORED_INPUT_TTL_MS);
  }
  try {
    const outcome = await s.control.send(org, projectId, "deliver", {
      session: sessionId,
      payload: { text: input.text, mode, ...(imagesKey ? { imagesKey } : {}) },
    });
    const unanswered = unansweredError(outcome);
    if (unanswered) throw unanswered;
    if (outcome.kind !== "reply" || !outcome.reply.ok) return undefined;
    const result = (outcome.reply.result ?? {}) as { delivered?: unknown; runId?: unknown };
    if (result.delivered !== mode || typeof result.runId !== "string") return undefined;
    return { runId: result.runId, offset };
  } finally {
    // Normally gone already (the worker takes it); not delivered: it must not linger.
    if (imagesKey) await s.redis.del(imagesKey).catch(() => undefined);
  }
}
