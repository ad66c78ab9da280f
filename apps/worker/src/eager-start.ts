/**
 * Starts a job as soon as an idle BullMQ consumer fetched it.
 *
 * BullMQ's worker loop (bullmq 6.7, `Worker.mainLoop`), after fetching a job, fetches again before
 * it starts the first one whenever its concurrency has room: a non-blocking `moveToActive` that
 * usually finds nothing, one Redis round trip on the path of every job that reaches an idle
 * consumer (twice for a cold project: the dispatch job, then the run job). Keeping the consumer's
 * concurrency at "jobs in flight + 1" (capped at the configured maximum) makes the loop start a
 * fetched job at once; its look-ahead fetch then happens while the job already runs.
 *
 * This works because BullMQ calls the processor synchronously when it starts a job, and reads
 * `worker.concurrency` (a public setter) before each fetch.
 */

/** The part of a BullMQ Worker this needs. */
export interface ConcurrencyTarget {
  concurrency: number;
}

/** Wraps a consumer's processor and steers its concurrency (see the module comment). */
export class EagerStart {
  readonly #max: number;
  #inFlight = 0;
  #target: ConcurrencyTarget | undefined;

  /** @param max the most jobs the consumer may process at once (≥ 1) */
  constructor(max: number) {
    this.#max = Math.max(1, max);
  }

  /** The concurrency to construct the consumer with. */
  get initial(): number {
    return 1;
  }

  /** Jobs being processed now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Steers `target` from now on (call before it starts running). */
  attach(target: ConcurrencyTarget): void {
    this.#target = target;
    this.#apply();
  }

  /**
   * The processor to give the consumer: counts the job in synchronously (before BullMQ's loop
   * decides whether to fetch again), runs `process`, counts it out when it settles.
   */
  wrap<J, R>(process: (job: J, token?: string) => Promise<R>): (job: J, token?: string) => Promise<R> {
    return (job, token) => {
      this.#inFlight++;
      this.#apply();
      let running: Promise<R>;
      try {
        running = process(job, token);
      } catch (err) {
        running = Promise.reject(err);
      }
      return running.finally(() => {
        this.#inFlight--;
        this.#apply();
      });
    };
  }

  #apply(): void {
    if (this.#target) this.#target.concurrency = Math.min(this.#max, this.#inFlight + 1);
  }
}
