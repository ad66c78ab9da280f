// A worker told to stop while it is taking a project's lease gives the project back at once and
// stops: it used to register the project after close() had stopped the runners it knew, so close()
// waited for that ownership for ever (until the drain grace timer killed the process) while it
// kept the lease and started the project's runs. The lease acquisition is held back here until
// close() has begun (the product's own acquire then runs unchanged).
import { DEFAULT_ORG } from "@pi-fleet/contracts";
import { LeaseManager } from "@pi-fleet/leases";
import { connectRedis, createKeys, type Redis } from "@pi-fleet/redis";
import { waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

let stack: InProcessStack;
let redis: Redis;

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "drain-acquire");
  redis = await connectRedis(inject("redisUrl"), "command", "test-drain-acquire");
});

afterAll(async () => {
  await stack?.close();
  await redis?.quit();
});

describe("drain during a lease acquisition", () => {
  it("gives the project back and stops promptly", async () => {
    await stack.call("POST", "/v1/projects", { name: "drain-acq" });
    const sid = ((await stack.call("POST", "/v1/projects/drain-acq/sessions")).json as { id: string }).id;

    const original = LeaseManager.prototype.acquire;
    let calls = 0;
    let proceed!: () => void;
    const gate = new Promise<void>((resolve) => {
      proceed = resolve;
    });
    LeaseManager.prototype.acquire = async function (this: LeaseManager, ...args) {
      calls++;
      await gate;
      return original.apply(this, args);
    };
    try {
      const res = await stack.call("POST", `/v1/projects/drain-acq/sessions/${sid}/prompt`, { text: "hi" });
      expect(res.status).toBeLessThan(300);
      await waitFor(() => calls > 0, { message: "the worker is taking the lease" });
      const worker = stack.workers[0];
      if (!worker) throw new Error("no worker");
      const closing = worker.close(0);
      proceed();
      const outcome = await Promise.race([
        closing.then(() => "closed"),
        new Promise((resolve) => setTimeout(() => resolve("still closing after 5 s"), 5000)),
      ]);
      expect(outcome).toBe("closed");
      const keys = createKeys(stack.prefix);
      expect(await redis.exists(keys.lease(DEFAULT_ORG, "drain-acq"))).toBe(0);
      // Nothing ran: the prompt waits in the queue for the next owner.
      const run = (
        await stack.call(
          "GET",
          `/v1/projects/drain-acq/sessions/${sid}/runs/${(res.json as { runId: string }).runId}`,
        )
      ).json as { status: string };
      expect(run.status).toBe("queued");
    } finally {
      LeaseManager.prototype.acquire = original;
      proceed();
    }
  });
});
