/**
 * A deadline for each message a socket client sends (`/v1/ws` and the pi RPC socket), as REST has
 * one for a request: from its first byte to its last, a message may take at most
 * PI_FLEET_REQUEST_TIMEOUT_MS to arrive. ws buffers an unfinished frame (up to maxPayload, ≈ 54 MiB
 * with the defaults) and the fragments of an unfinished message without a time limit, and a
 * client may answer pings between fragments meanwhile, so without it a few sockets could hold
 * gigabytes by never finishing their messages. Past the deadline the socket is closed with 1009
 * (see {@link MESSAGE_TIMEOUT_CLOSE_CODE}) and cut a second later (socket-lifecycle.ts), which
 * frees what ws had buffered.
 *
 * ws keeps its partial-frame state private, so the raw socket's bytes are followed here by a
 * minimal reader of frame boundaries (RFC 6455 §5.2): it reads the 2–14 header bytes of each
 * frame and counts payload bytes without copying them.
 */
import type { Readable } from "node:stream";
import type { WebSocket } from "ws";
import { closeSocket } from "./socket-lifecycle.ts";

/**
 * Close code of a socket whose message did not arrive in time: 1009 ("message too big to
 * process"), as for a frame over the size limit: the message was too large for the time allowed.
 * The generated client then fails the requests in flight without re-sending them (a re-sent
 * message would time out again) and reconnects; 1008 would stop it for good (it means the
 * credential was revoked), 1002 would make it re-send them.
 */
export const MESSAGE_TIMEOUT_CLOSE_CODE = 1009;

/** Frame boundaries of a client's byte stream (client frames are masked; payload never read). */
export class FrameBoundaries {
  /** Header bytes of the frame being read, and how many it has (2, then up to 14). */
  readonly #header = new Uint8Array(14);
  #headerLength = 0;
  /** Payload bytes of the current frame still to come; -1 while its header is being read. */
  #remaining = -1;
  #dataFrame = false;
  #final = false;
  /** A data message whose final fragment has not arrived (control frames may come between). */
  #fragmented = false;

  /** Whether a message (or control frame) has started and not finished. */
  get busy(): boolean {
    return this.#headerLength > 0 || this.#remaining >= 0 || this.#fragmented;
  }

  /**
   * Reads `chunk`, the next bytes of the stream.
   * @returns whether the stream was between messages before the chunk or at some point within
   *   it (so a message still unfinished after it started in this chunk)
   */
  feed(chunk: Uint8Array): boolean {
    let boundary = !this.busy;
    let i = 0;
    while (i < chunk.length) {
      if (this.#remaining < 0) {
        i = this.#readHeader(chunk, i);
        if (this.#remaining !== 0) continue;
      } else {
        const take = Math.min(this.#remaining, chunk.length - i);
        this.#remaining -= take;
        i += take;
        if (this.#remaining > 0) continue;
      }
      // The frame is complete.
      this.#remaining = -1;
      if (this.#dataFrame) this.#fragmented = !this.#final;
      if (!this.#fragmented) boundary = true;
    }
    return boundary;
  }

  /** Takes header bytes from `chunk` at `i`; sets #remaining once the header is complete. */
  #readHeader(chunk: Uint8Array, i: number): number {
    const h = this.#header;
    while (i < chunk.length && this.#headerLength < this.#needed())
      h[this.#headerLength++] = chunk[i++] as number;
    if (this.#headerLength < this.#needed()) return i;
    const b0 = h[0] as number;
    const b1 = h[1] as number;
    const opcode = b0 & 0x0f;
    this.#final = (b0 & 0x80) !== 0;
    // Continuation, text and binary frames make up messages; the rest are control frames.
    this.#dataFrame = opcode < 0x08;
    const short = b1 & 0x7f;
    if (short === 126) this.#remaining = ((h[2] as number) << 8) | (h[3] as number);
    else if (short === 127) {
      const view = new DataView(h.buffer, 2, 8);
      // Beyond 2^53 it is inexact, but ws closes such a frame (1009) long before.
      this.#remaining = view.getUint32(0) * 2 ** 32 + view.getUint32(4);
    } else this.#remaining = short;
    this.#headerLength = 0;
    return i;
  }

  /** Header length of the frame being read, as far as its first two bytes tell. */
  #needed(): number {
    if (this.#headerLength < 2) return 2;
    const b1 = this.#header[1] as number;
    const short = b1 & 0x7f;
    return 2 + (short === 126 ? 2 : short === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
  }
}

/**
 * Closes `socket` ({@link MESSAGE_TIMEOUT_CLOSE_CODE}) when a message it started receiving has not
 * fully arrived `timeoutMs` later. `raw` is the connection's TCP socket (the upgrade request's
 * `request.raw.socket`); call this synchronously in the socket route's handler, before ws starts
 * reading it, so every byte is seen. Time the gateway itself does not read the socket (`raw`
 * paused: FrameFlow in socket-lifecycle.ts, or ws's own backpressure) does not count: the clock
 * stops at the raw socket's `pause` and goes on at its `resume`.
 * @returns stop (also called when the socket closes)
 */
export function messageDeadline(socket: WebSocket, raw: Readable, timeoutMs: number): () => void {
  const frames = new FrameBoundaries();
  /** When the unfinished message started arriving (performance.now()), moved by paused time. */
  let since = 0;
  /** Since when the gateway does not read the socket, if it does not. */
  let pausedAt: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  const arm = (ms: number): void => {
    timer = setTimeout(check, ms);
    timer.unref();
  };
  const check = (): void => {
    timer = undefined;
    // Finished meanwhile: the next message arms its own deadline.
    if (!frames.busy) return;
    // Not read by the gateway: the clock stands still; look again later.
    if (pausedAt !== undefined) {
      arm(timeoutMs);
      return;
    }
    const left = since + timeoutMs - performance.now();
    if (left > 0) {
      arm(left);
      return;
    }
    stop();
    closeSocket(socket, MESSAGE_TIMEOUT_CLOSE_CODE, `message not received within ${timeoutMs} ms`);
  };
  const onData = (chunk: Buffer): void => {
    const started = frames.feed(chunk);
    if (!frames.busy) return;
    // The timer is left running between messages (no churn per frame); a message that started
    // in this chunk restarts the clock.
    if (started || timer === undefined) since = performance.now();
    if (timer === undefined) arm(timeoutMs);
  };
  const onPause = (): void => {
    pausedAt ??= performance.now();
  };
  const onResume = (): void => {
    if (pausedAt === undefined) return;
    since += performance.now() - pausedAt;
    pausedAt = undefined;
  };
  const stop = (): void => {
    raw.off("data", onData);
    raw.off("pause", onPause);
    raw.off("resume", onResume);
    clearTimeout(timer);
    timer = undefined;
  };
  raw.on("data", onData);
  raw.on("pause", onPause);
  raw.on("resume", onResume);
  socket.once("close", stop);
  return stop;
}
