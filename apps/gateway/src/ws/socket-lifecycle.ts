/**
 * The lifecycle rules both socket kinds share (`/v1/ws` and the pi RPC socket): a close the
 * client does not complete is cut, a client that stops answering pings is cut, and frames a
 * client sends faster than they are handled stop being read.
 */
import type { WebSocket } from "ws";

/** A client that has not completed the close handshake this long after our close frame is cut (ms). */
export const CLOSE_GRACE_MS = 1000;

/**
 * The same for a client cut as too slow (1013): it gets the time ws gives any close (30 s) to read
 * what was queued before the close frame — its final `stream_lagging` events — once it reads again.
 */
export const LAGGING_CLOSE_GRACE_MS = 30_000;

/** The close deadline for `code` ({@link LAGGING_CLOSE_GRACE_MS} for 1013, else {@link CLOSE_GRACE_MS}). */
export function closeGraceMs(code: number): number {
  return code === 1013 ? LAGGING_CLOSE_GRACE_MS : CLOSE_GRACE_MS;
}

/** Frames handled at once per socket; beyond it the socket is not read until half have finished. */
export const MAX_FRAMES_IN_FLIGHT = 64;

/**
 * Sends a close frame with `code` and `reason` (none when the socket is already closing), and
 * terminates the socket if the client has not completed the close handshake within `graceMs`
 * (default {@link closeGraceMs}; ws alone would wait 30 s, holding up a gateway's shutdown).
 */
export function closeSocket(
  socket: WebSocket,
  code: number,
  reason: string,
  graceMs = closeGraceMs(code),
): void {
  if (socket.readyState === socket.CLOSED) return;
  if (socket.readyState === socket.CONNECTING) {
    socket.terminate();
    return;
  }
  if (socket.readyState === socket.OPEN) socket.close(code, reason);
  const timer = setTimeout(() => {
    if (socket.readyState !== socket.CLOSED) socket.terminate();
  }, graceMs);
  timer.unref();
  socket.once("close", () => clearTimeout(timer));
}

/**
 * Pings the client every `intervalMs` (WebSocket ping; browsers and ws answer by themselves); a
 * socket that has shown no sign of life since the previous ping — no pong, no frame, and nothing
 * of what was queued for it taken (a client busy reading a backlog answers the ping only after
 * it) — is terminated, so a client that vanished without a FIN gives back its stream slot within
 * two intervals.
 * @returns stop (also called when the socket closes)
 */
export function keepAlive(socket: WebSocket, intervalMs: number): () => void {
  let alive = true;
  const mark = (): void => {
    alive = true;
  };
  socket.on("pong", mark);
  socket.on("message", mark);
  let buffered = socket.bufferedAmount;
  const timer = setInterval(() => {
    // A socket FrameFlow paused is not read, pongs included: not a sign of death.
    if (socket.isPaused || socket.bufferedAmount < buffered) alive = true;
    buffered = socket.bufferedAmount;
    if (!alive) {
      socket.terminate();
      return;
    }
    alive = false;
    if (socket.readyState === socket.OPEN) socket.ping();
  }, intervalMs);
  timer.unref();
  const stop = (): void => clearInterval(timer);
  socket.once("close", stop);
  return stop;
}

/**
 * Bounds the frames of one socket being handled at once: at {@link MAX_FRAMES_IN_FLIGHT} the
 * socket is paused (its bytes wait in the kernel, then at the client: TCP backpressure) until
 * half of them have finished.
 */
export class FrameFlow {
  #inFlight = 0;
  #paused = false;
  readonly #socket: WebSocket;
  readonly #max: number;

  constructor(socket: WebSocket, max = MAX_FRAMES_IN_FLIGHT) {
    this.#socket = socket;
    this.#max = max;
  }

  /** Frames being handled now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Counts `work` (one frame's handling) until it settles; returns it. */
  track<T>(work: Promise<T>): Promise<T> {
    this.#inFlight++;
    if (!this.#paused && this.#inFlight >= this.#max) {
      this.#paused = true;
      this.#socket.pause();
    }
    const done = (): void => {
      this.#inFlight--;
      if (this.#paused && this.#inFlight <= this.#max / 2) {
        this.#paused = false;
        if (this.#socket.readyState === this.#socket.OPEN) this.#socket.resume();
      }
    };
    work.then(done, done);
    return work;
  }
}
