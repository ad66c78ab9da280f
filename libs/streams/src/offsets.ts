/**
 * Stream offsets are Redis stream entry ids (`<ms>-<seq>`), totally ordered within a stream.
 * "0" means "before everything". These helpers compare them and compute the synthetic offset
 * "just before" an entry, which a client can resume from without missing that entry.
 */

const MAX_SEQ = 18446744073709551615n;

/** The offset that sorts before every entry. */
export const ORIGIN = "0-0";

function parse(id: string): [bigint, bigint] {
  if (id === "0") return [0n, 0n];
  const dash = id.indexOf("-");
  if (dash < 0) return [BigInt(id), 0n];
  return [BigInt(id.slice(0, dash)), BigInt(id.slice(dash + 1))];
}

/** Orders two offsets: negative when a < b, 0 when equal, positive when a > b. */
export function compareOffsets(a: string, b: string): number {
  const [am, as] = parse(a);
  const [bm, bs] = parse(b);
  if (am !== bm) return am < bm ? -1 : 1;
  if (as !== bs) return as < bs ? -1 : 1;
  return 0;
}

/**
 * The greatest offset strictly below `id` (queues-and-streams.md §4 "Offsets"): an exclusive
 * replay from it starts exactly at `id`.
 */
export function offsetBefore(id: string): string {
  const [ms, seq] = parse(id);
  if (seq > 0n) return `${ms}-${seq - 1n}`;
  if (ms === 0n) return ORIGIN;
  return `${ms - 1n}-${MAX_SEQ}`;
}
