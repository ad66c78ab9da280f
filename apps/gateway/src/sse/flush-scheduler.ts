/**
 * One `setImmediate` per I/O turn for every SSE stream with frames to write, instead of one per
 * stream: at 10k subscribers the per-stream immediates were ~6 % of a busy gateway thread.
 */

/** Something with queued frames to write out. */
export interface Flushable {
  flush(): void;
}

const queued: Flushable[] = [];
let scheduled = false;

function flushQueued(): void {
  scheduled = false;
  const batch = queued.splice(0);
  for (const item of batch) item.flush();
}

/**
 * Calls `item.flush()` once after the current I/O turn, together with every other item queued in
 * it. The caller queues an item at most once per turn.
 */
export function flushAfterTurn(item: Flushable): void {
  queued.push(item);
  if (!scheduled) {
    scheduled = true;
    setImmediate(flushQueued);
  }
}
