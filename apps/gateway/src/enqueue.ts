/**
 * Queues a prompt as a run: records it and appends `run_queued` atomically (with the
 * `Idempotency-Key`, if any), adds the job to the project queue and signals dispatch. Shared by
 * `POST …/prompt` and by steer / follow-up on an idle session (which become prompts).
 */
import { createHash, randomUUID } from "node:crypto";
import { ApiError } from "@pi-fleet/contracts";
import { MissingRecordError, offsetBefore } from "@pi-fleet/streams";
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
 * Enqueues `text` as a new run of the session (or returns the run an idempotency key already names).
 * @throws ApiError 404 when the session vanished; the Redis/queue error when enqueueing failed
 */
export async function enqueuePrompt(
  s: GatewayServices,
  projectId: string,
  sessionId: string,
  text: string,
  idempotencyKey?: string,
): Promise<QueuedRun> {
  const ref = { org: s.org, project: projectId, session: sessionId };
  const digest = idempotencyKey
    ? createHash("sha256").update(idempotencyKey).digest("hex").slice(0, 32)
    : undefined;
  let result: Awaited<ReturnType<typeof s.events.enqueueRun>>;
  try {
    result = await s.events.enqueueRun(ref, randomUUID(), {
      idempotencyDigest: digest,
      firstMessage: text.slice(0, 200),
      promptChars: text.length,
    });
  } catch (err) {
    if (err instanceof MissingRecordError) throw new ApiError("PF_ERR_SESSION_NOT_FOUND");
    throw err;
  }
  if (!result.created) {
    const existing = await s.events.getRun(s.org, projectId, result.runId);
    if (!existing) throw new ApiError("PF_ERR_RUN_NOT_FOUND", "the run of this Idempotency-Key expired");
    return { runId: existing.id, offset: offsetBefore(existing.queuedOffset), position: existing.position };
  }
  try {
    await s.producer.enqueue({
      org: s.org,
      project: projectId,
      sessionId,
      runId: result.runId,
      seq: result.seq ?? 0,
      text,
      enqueuedAtNs: process.hrtime.bigint().toString(),
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
