/**
 * Queues a prompt as a run: records it and appends `run_queued` atomically (with the
 * `Idempotency-Key`, if any), adds the job to the project queue and signals dispatch. Shared by
 * `POST …/prompt` and by steer / follow-up on an idle session (which become prompts).
 */
import { createHash, randomUUID } from "node:crypto";
import { ApiError, textPreview } from "@pi-fleet/contracts";
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
 * Enqueues `input` (text and images, already validated: see prompt-input.ts) as a new run of the
 * session, or returns the run an idempotency key already names. Images travel inline in the
 * BullMQ job (bounded by PI_FLEET_MAX_IMAGES × PI_FLEET_MAX_IMAGE_BYTES; such jobs are not kept
 * once done, see `runJobOptions`).
 *
 * Caps (429 PF_ERR_QUEUE_FULL, nothing written): PI_FLEET_PROJECT_MAX_QUEUED open runs of the
 * project and PI_FLEET_ORG_MAX_QUEUED of the org, both checked inside the enqueue script. The org
 * count is an index that a crash between a run's end and its removal can leave stale, so at the
 * org cap the index is repaired (ended runs dropped) and the enqueue tried once more: a lost
 * update can never lock an org out.
 * @throws ApiError 404 when the session does not exist; 429 at a queue cap; the Redis/queue error
 *   when enqueueing failed
 */
export async function enqueuePrompt(
  s: GatewayServices,
  org: string,
  projectId: string,
  sessionId: string,
  input: UserInput,
  idempotencyKey?: string,
): Promise<QueuedRun> {
  const { text, images } = input;
  const ref = { org, project: projectId, session: sessionId };
  const digest = idempotencyKey
    ? createHash("sha256").update(idempotencyKey).digest("hex").slice(0, 32)
    : undefined;
  const enqueue = () =>
    s.events.enqueueRun(ref, randomUUID(), {
      idempotencyDigest: digest,
      firstMessage: textPreview(text, 200),
      promptChars: text.length,
      maxOpenRuns: s.env.PI_FLEET_PROJECT_MAX_QUEUED,
      maxOrgOpenRuns: s.env.PI_FLEET_ORG_MAX_QUEUED,
    });
  let result: Awaited<ReturnType<typeof s.events.enqueueRun>>;
  try {
    try {
      result = await enqueue();
    } catch (err) {
      if (!(err instanceof QueueFullError && err.scope === "org")) throw err;
      await s.events.orgOpenRuns(org, { repair: true });
      result = await enqueue();
    }
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
