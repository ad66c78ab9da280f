/**
 * Queues a prompt as a run: records it and appends `run_queued` atomically (with the
 * `Idempotency-Key`, if any), adds the job to the project queue and signals dispatch. Shared by
 * `POST …/prompt` and by steer / follow-up on an idle session (which become prompts).
 */
import { createHash, randomUUID } from "node:crypto";
import { ApiError } from "@pi-fleet/contracts";
import { MissingRecordError, offsetBefore, QueueFullError } from "@pi-fleet/streams";
import type { UserInput } from "./prompt-input.ts";
import type { GatewayServices } from "./services.ts";

/** What a client learns about a queued run. */
export interface QueuedRun {
  runId: string;
  /** Offset just before the run's `run_queued`: subscribe from it to miss nothing. */
  offset: string;
  /** Runs of the session ahead of this one. */
  position: number;
}

/**
 * Refuses a prompt (429 PF_ERR_QUEUE_FULL) when the org already has PI_FLEET_ORG_MAX_QUEUED open
 * runs. The plain count is one ZCARD; only at the cap is the index repaired (entries whose run
 * ended are dropped) and counted again, so a lost index update can never lock an org out.
 * Concurrent prompts may pass the check together and overshoot the cap by as many: a soft cap.
 * Callers on the latency path run it alongside their session lookup and pass `orgCapChecked` to
 * {@link enqueuePrompt}.
 * @throws ApiError 429 PF_ERR_QUEUE_FULL at the cap
 */
export async function checkOrgCap(s: GatewayServices, org: string): Promise<void> {
  const cap = s.env.PI_FLEET_ORG_MAX_QUEUED;
  if (cap === 0) return;
  if ((await s.events.orgOpenRuns(org)) < cap) return;
  if ((await s.events.orgOpenRuns(org, { repair: true })) < cap) return;
  throw new ApiError("PF_ERR_QUEUE_FULL", `the org has ${cap} queued or running runs`);
}

/**
 * Enqueues `input` (text and images, already validated: see prompt-input.ts) as a new run of the
 * session, or returns the run an idempotency key already names. Images travel inline in the
 * BullMQ job (bounded by PI_FLEET_MAX_IMAGES × PI_FLEET_MAX_IMAGE_BYTES; such jobs are not kept
 * once done, see `runJobOptions`).
 * @param orgCapChecked the caller already ran {@link checkOrgCap} for this request
 * @throws ApiError 404 when the session vanished; 429 at a queue cap; the Redis/queue error when
 *   enqueueing failed
 */
export async function enqueuePrompt(
  s: GatewayServices,
  org: string,
  projectId: string,
  sessionId: string,
  input: UserInput,
  idempotencyKey?: string,
  orgCapChecked = false,
): Promise<QueuedRun> {
  const { text, images } = input;
  const ref = { org, project: projectId, session: sessionId };
  const digest = idempotencyKey
    ? createHash("sha256").update(idempotencyKey).digest("hex").slice(0, 32)
    : undefined;
  if (!orgCapChecked) await checkOrgCap(s, org);
  let result: Awaited<ReturnType<typeof s.events.enqueueRun>>;
  try {
    result = await s.events.enqueueRun(ref, randomUUID(), {
      idempotencyDigest: digest,
      firstMessage: text.slice(0, 200),
      promptChars: text.length,
      maxOpenRuns: s.env.PI_FLEET_PROJECT_MAX_QUEUED,
    });
  } catch (err) {
    if (err instanceof MissingRecordError) throw new ApiError("PF_ERR_SESSION_NOT_FOUND");
    if (err instanceof QueueFullError) throw new ApiError("PF_ERR_QUEUE_FULL", err.message);
    throw err;
  }
  if (!result.created) {
    const existing = await s.events.getRun(org, projectId, result.runId);
    if (!existing) throw new ApiError("PF_ERR_RUN_NOT_FOUND", "the run of this Idempotency-Key expired");
    return { runId: existing.id, offset: offsetBefore(existing.queuedOffset), position: existing.position };
  }
  // The org index (PI_FLEET_ORG_MAX_QUEUED) is updated alongside the queue add, not before it: it
  // is a soft count (a lost entry only undercounts until the run ends).
  const tracked = s.events.trackOrgRun(org, projectId, result.runId).catch(() => undefined);
  try {
    await s.producer.enqueue({
      org,
      project: projectId,
      sessionId,
      runId: result.runId,
      seq: result.seq ?? 0,
      text,
      ...(images?.length ? { images } : {}),
      enqueuedAtNs: process.hrtime.bigint().toString(),
      enqueuedAtMs: Date.now(),
    });
    await tracked;
  } catch (err) {
    // The job never reached the queue: close the run so nobody waits for it.
    const error = "could not enqueue the run";
    await s.events
      .transitionRun(
        ref,
        result.runId,
        "",
        ["queued"],
        "failed",
        { type: "run_failed", runId: result.runId, sessionId, error },
        { error },
      )
      .catch(() => undefined);
    throw err;
  }
  return {
    runId: result.runId,
    offset: offsetBefore(result.queuedOffset ?? "0-1"),
    position: result.position ?? 0,
  };
}
