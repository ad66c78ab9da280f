/**
 * Replay backpressure shared by SSE streams and WebSockets: wait until a socket holds at most
 * `highWater` unsent bytes. Node emits `drain` only after a write returned false, i.e. once more
 * than the socket's own high-water mark (64 KiB on Node 24) was queued; a replay that waits at a
 * lower mark (a quarter of PI_FLEET_CLIENT_MAX_BUFFER_BYTES) would never hear it. So the wait also
 * looks at the socket: every 5 ms while the client takes bytes, backing off to every 250 ms while
 * it takes none — a client that reads is resumed within milliseconds, thousands of stalled ones
 * cost a few timer ticks per second each.
 */
import type { EventEmitter } from "node:events";
import type { Writable } from "node:stream";

/** First interval between two looks at a congested socket (ms). */
const FIRST_CHECK_MS = 5;
/** Longest interval between two looks, reached while the client takes no byte (ms). */
export const STALLED_CHECK_MS = 250;

/** What a drain wait watches. */
export interface DrainWatch {
  /** Unsent bytes now (bytes). */
  buffered(): number;
  /**
   * Bytes the client's TCP connection has taken so far (monotonic): progress, even while other
   * traffic on the same socket keeps `buffered()` up. For a net.Socket: `bytesWritten` (handed to
   * it) minus `writableLength` (not yet written to the kernel), see {@link takenBy}.
   */
  taken(): number;
  /** Resolve once `buffered()` is at most this (bytes). */
  highWater: number;
  /** Emitters whose `drain` means everything was sent (the TCP socket, the HTTP response). */
  drains: readonly EventEmitter[];
  /** Emitters whose `close` ends the wait. */
  closes: readonly EventEmitter[];
  /** True when the stream or socket ended by other means: the wait ends. */
  ended(): boolean;
  /** The client took no byte for this long (ms): `onStall()` is called and the wait ends. */
  stallMs: number;
  onStall(): void;
}

/** What `socket` has written to the kernel so far (bytes): its `taken()`. */
export function takenBy(socket: Writable & { bytesWritten: number }): number {
  return socket.bytesWritten - socket.writableLength;
}

/**
 * Resolves when the socket holds at most `highWater` unsent bytes, when it drained or closed, when
 * `ended()` turns true, or after `onStall()`. Never rejects.
 */
export function waitForDrain(w: DrainWatch): Promise<void> {
  return new Promise((resolve) => {
    let last = w.taken();
    let progressAt = performance.now();
    let delay = FIRST_CHECK_MS;
    let timer: NodeJS.Timeout | undefined;
    const done = (): void => {
      clearTimeout(timer);
      for (const e of w.drains) e.off("drain", done);
      for (const e of w.closes) e.off("close", done);
      resolve();
    };
    const check = (): void => {
      if (w.ended() || w.buffered() <= w.highWater) {
        done();
        return;
      }
      const taken = w.taken();
      if (taken > last) {
        last = taken;
        progressAt = performance.now();
        delay = FIRST_CHECK_MS;
      } else if (performance.now() - progressAt > w.stallMs) {
        w.onStall();
        done();
        return;
      } else {
        delay = Math.min(delay * 2, STALLED_CHECK_MS);
      }
      timer = setTimeout(check, delay);
    };
    for (const e of w.drains) e.on("drain", done);
    for (const e of w.closes) e.on("close", done);
    timer = setTimeout(check, delay);
  });
}
