/**
 * The lifecycle rules both socket kinds share (`/v1/ws` and the pi RPC socket): a close the
 * client does not complete is cut, a client that stops answering pings is cut, and frames a
 * client sends faster than they are handled stop being read.
 */
import type { WebSocket } from "ws";

/** A client that has not completed the close handshake this long after our close frame is cut (ms). */
export const CLOSE_GRACE_MS = 1000;

/** Frames handled at once per socket; beyond it the socket is not read until half have finished. */
export const MAX_FRAMES_IN_FLIGHT = 64;

/**
 * Sends a close frame with `code` and `reason`, and terminates the socket if the client has not
 * answered it within {@link CLOSE_GRACE_MS} (ws would wait 30 s, holding up a gateway's shutdown).
 */
export function closeSocket(socket: WebSocket, code: number, reason: string): void {
  if (socket.readyState === socket.CLOSED) return;
  if (socket.readyState === socket.CONNECTING) {
    socket.terminate();
    return;
  }
  if (socket.readyState === socket.OPEN) socket.close(code, reason);
  const timer = setTimeout(() => {
    if (socket.readyState !== socket.CLOSED) socket.terminate();
  }, CLOSE_GRACE_MS);
  timer.unref();
  socket.once("close", () => clearTimeout(timer));
}

/**
 * Pings the client every `intervalMs` (WebSocket ping; browsers and ws answer by themselves); a
 * socket that has shown no sign of life (pong or frame) since the previous ping is terminated, so
 * a client that vanished without a FIN gives back its stream slot within two intervals.
 * @returns stop (also called when the socket closes)
 */
export function keepAlive(socket: WebSocket, intervalMs: number): () => void {
  let alive = true;
  const mark = (): void => {
    alive = true;
  };
  socket.on("pong", mark);
  socket.on("message", mark);
  const timer = setInterval(() => {
    // A socket FrameFlow paused is not read, pongs included: not a sign of death.
    if (socket.isPaused) alive = true;
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
