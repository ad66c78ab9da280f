// EagerStart keeps a BullMQ consumer's concurrency at "jobs in flight + 1", capped: counted in
// synchronously when the processor is called, out when its promise settles (also on rejection
// and on a synchronous throw). The BullMQ loop this steers is exercised by the integration and
// chaos tests (runs of different sessions overlap, PI_FLEET_PROJECT_MAX_RUNS / MAX_RUNS hold).
import { describe, expect, it } from "vitest";
import { EagerStart } from "../../apps/worker/src/eager-start.ts";

function deferred() {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe("EagerStart", () => {
  it("starts a consumer at concurrency 1 and follows in-flight jobs + 1 up to the cap", async () => {
    const eager = new EagerStart(3);
    const target = { concurrency: 99 };
    expect(eager.initial).toBe(1);
    eager.attach(target);
    expect(target.concurrency).toBe(1);

    const jobs = [deferred(), deferred(), deferred()];
    const seen: number[] = [];
    const processor = eager.wrap(async (i: number) => {
      // Counted in before the processor body runs (BullMQ reads the value right after the call).
      seen.push(target.concurrency);
      await jobs[i]?.promise;
    });
    const running = [processor(0), processor(1), processor(2)];
    expect(seen).toEqual([2, 3, 3]);
    expect(eager.inFlight).toBe(3);

    jobs[1]?.resolve();
    await running[1];
    expect(target.concurrency).toBe(3);
    jobs[0]?.reject(new Error("run failed"));
    await expect(running[0]).rejects.toThrow("run failed");
    expect(target.concurrency).toBe(2);
    jobs[2]?.resolve();
    await running[2];
    expect(eager.inFlight).toBe(0);
    expect(target.concurrency).toBe(1);
  });

  it("counts a processor that throws synchronously back out", async () => {
    const eager = new EagerStart(4);
    const target = { concurrency: 1 };
    eager.attach(target);
    const processor = eager.wrap((): Promise<void> => {
      throw new Error("bad job");
    });
    await expect(processor(undefined)).rejects.toThrow("bad job");
    expect(eager.inFlight).toBe(0);
    expect(target.concurrency).toBe(1);
  });

  it("never goes below 1 (a cap of 0 means one job at a time)", () => {
    const target = { concurrency: 5 };
    new EagerStart(0).attach(target);
    expect(target.concurrency).toBe(1);
  });
});
