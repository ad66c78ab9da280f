// BullMQ behaviour the fleet's queue options rely on, against a real Redis. A consumer built with
// the consumer options (queueOptions) keeps BullMQ's Redis version check: without it BullMQ
// assumes Redis 5.0 and rounds blocking waits up to whole seconds, so a job delayed by 150 ms
// (a run deferred behind its session's open run) reached an idle consumer only after ~1 s.
import { once } from "node:events";
import { projectQueueOptions, queueOptions } from "@pi-fleet/queue";
import { connectRedis, type Redis } from "@pi-fleet/redis";
import { uniquePrefix } from "@pi-fleet/testkit";
import { Queue, Worker } from "bullmq";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

let connection: Redis;
const prefix = uniquePrefix("queue-options");

beforeAll(async () => {
  connection = await connectRedis(inject("redisUrl"), "bullmq", "test-queue-options");
});

afterAll(async () => {
  await connection.quit();
});

/** Called by the consumer's processor for each job (set per sample). */
let onJob: () => void = () => {};

/** How late (ms) after its due time an idle consumer starts a job delayed by `delayMs`. */
async function lateness(queue: Queue, delayMs: number): Promise<number> {
  const seen = new Promise<number>((resolve) => {
    onJob = () => resolve(Date.now());
  });
  const due = Date.now() + delayMs;
  await queue.add("run", {}, { delay: delayMs, removeOnComplete: true });
  return (await seen) - due;
}

describe("per-project consumer options", () => {
  it("an idle consumer starts a job delayed by 150 ms well within a second of its due time", async () => {
    const name = "{acme.delayed}";
    // Producer side as the gateway and owners build it (no version check), consumer as the owner.
    const queue = new Queue(name, { connection, ...projectQueueOptions(prefix) });
    const worker = new Worker(name, async () => onJob(), {
      connection,
      ...queueOptions(prefix),
      concurrency: 1,
      autorun: false,
    });
    try {
      // Idle: it found the queue empty and blocks on it.
      const drained = once(worker, "drained");
      void worker.run();
      await drained;
      const samples: number[] = [];
      for (let i = 0; i < 3; i++) samples.push(await lateness(queue, 150));
      // Whole-second rounding makes every sample ≥ ~850 ms late; the best of three allows for load.
      expect(Math.min(...samples)).toBeLessThan(500);
    } finally {
      await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });
});
