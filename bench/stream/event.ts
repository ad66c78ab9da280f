/**
 * The event the producer appends and the clients time: shaped like a real streamed text delta
 * (the lean `message_update` wire form, ~150 bytes) plus a `bench` object with the per-session
 * sequence number `s` and the append time `t` (µs on the shared monotonic clock). Clients pull
 * `s` and `t` out with indexOf instead of JSON.parse, to keep the client processes cheap.
 */

const DELTA = "lorem ipsum dolor sit amet, ";

export function benchEvent(seq: number, tUs: number): string {
  return (
    `{"type":"message_update","assistantMessageEvent":{"type":"text_delta","contentIndex":0,` +
    `"delta":"${DELTA}"},"bench":{"s":${seq},"t":${tUs}}}`
  );
}

const MARK = '"bench":{"s":';
const T_MARK = ',"t":';

/** Reads a non-negative decimal integer starting at `from`; -1 when there is none. */
function readInt(text: string, from: number): number {
  let n = 0;
  let i = from;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i) - 48;
    if (c < 0 || c > 9) break;
    n = n * 10 + c;
  }
  return i === from ? -1 : n;
}

/** The bench fields of an event found in `text` between `from` and `to`, or undefined. */
export function readBenchFields(
  text: string,
  from = 0,
  to = text.length,
): { seq: number; tUs: number } | undefined {
  const at = text.indexOf(MARK, from);
  if (at < 0 || at >= to) return undefined;
  const seqAt = at + MARK.length;
  const seq = readInt(text, seqAt);
  const tAt = text.indexOf(T_MARK, seqAt);
  if (seq < 0 || tAt < 0) return undefined;
  const tUs = readInt(text, tAt + T_MARK.length);
  return tUs < 0 ? undefined : { seq, tUs };
}
