/**
 * The bytes of SSE frames on the wire, built once per event and shared by every subscriber.
 *
 * A session's event reaches each of its subscribers as the same frame. `res.write` would build,
 * encode and chunk-frame it again per subscriber (three socket writes, a hex size string, a
 * UTF-8 copy); instead the frame is encoded once as one complete HTTP/1.1 chunk
 * (`<hex size>\r\n<frame>\r\n`, RFC 9112 §7.1) and the same Buffer is written to every socket.
 * Frames queued by many streams in one I/O turn are flushed by one `setImmediate`.
 */
import type { ServerResponse } from "node:http";

/** `frame` as one HTTP/1.1 chunk: `<hex byte size>\r\n<frame>\r\n`. */
export function chunkOf(frame: string): Buffer {
  return Buffer.from(`${Buffer.byteLength(frame).toString(16)}\r\n${frame}\r\n`);
}

let cachedId: string | undefined;
let cachedData: string | undefined;
let cachedChunk: Buffer | undefined;

/**
 * The chunk of a stream entry's frame `id: <id>\ndata: <data>\n\n`. The hub hands one entry to
 * all subscribers of its stream in a row, so a one-slot cache builds it once per event.
 */
export function entryChunk(id: string, data: string): Buffer {
  if (cachedChunk === undefined || cachedId !== id || cachedData !== data) {
    cachedChunk = chunkOf(`id: ${id}\ndata: ${data}\n\n`);
    cachedId = id;
    cachedData = data;
  }
  return cachedChunk;
}

/**
 * Whether chunks may go straight to the response's socket: the head is on the socket, the body
 * is chunked (an HTTP/1.0 client gets a close-delimited body: no), and nothing is queued inside
 * the response itself (Node assigns the socket to a pipelined response only on its turn).
 * `res.end()` later writes the terminating chunk after them, so the framing stays valid and the
 * connection reusable.
 */
export function canWriteChunks(res: ServerResponse): boolean {
  const socket = res.socket;
  return (
    socket !== null &&
    res.headersSent &&
    res.chunkedEncoding &&
    !res.writableEnded &&
    res.writableLength === socket.writableLength
  );
}

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
 * it (one `setImmediate` for all). The caller queues an item at most once per turn.
 */
export function flushAfterTurn(item: Flushable): void {
  queued.push(item);
  if (!scheduled) {
    scheduled = true;
    setImmediate(flushQueued);
  }
}
