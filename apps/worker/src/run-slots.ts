/**
 * Worker-wide cap on concurrent runs (`PI_FLEET_MAX_RUNS`), across all owned projects: a FIFO
 * semaphore. A run takes a slot just before the start-run script (which checks its session's turn
 * and its org's quota, and marks it running) and gives it back at once when it did not start.
 */

/** A counting semaphore with FIFO waiters and abortable waits. */
export class RunSlots {
  private readonly max: number;
  private used = 0;
  private readonly waiters: (() => void)[] = [];

  constructor(max: number) {
    this.max = max;
  }

  /** Slots in use. */
  get inUse(): number {
    return this.used;
  }

  /** Waits for a slot; returns false (without a slot) if `signal` aborts first. */
  async acquire(signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return false;
    if (this.used < this.max) {
      this.used++;
      return true;
    }
    return new Promise((resolve) => {
      const grant = () => {
        signal.removeEventListener("abort", cancel);
        resolve(true);
      };
      const cancel = () => {
        const i = this.waiters.indexOf(grant);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(false);
      };
      this.waiters.push(grant);
      signal.addEventListener("abort", cancel, { once: true });
    });
  }

  /** Returns a slot (hands it straight to the oldest waiter, if any). */
  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.used--;
  }
}
