/**
 * A nesting limit for JSON that clients send (REST bodies, `/v1/ws` frames, pi RPC records).
 *
 * `JSON.parse` accepts arrays nested thousands deep in a few KB, but `JSON.stringify` of the
 * same value (to forward a socket request to its route, or to echo an id) overflows the call
 * stack with a RangeError. Values deeper than {@link MAX_JSON_DEPTH} are refused as bad input
 * right after parsing; no request of the API nests more than a handful of levels.
 */

/** Deepest nesting (arrays and objects) accepted in client JSON. */
export const MAX_JSON_DEPTH = 64;

/** The error text for a value nested too deep. */
export const TOO_DEEP_MESSAGE = `JSON nested deeper than ${MAX_JSON_DEPTH} levels`;

/**
 * True when `value` (a parsed JSON value) nests arrays/objects deeper than `max` levels (a
 * scalar is depth 0, `[]` and `{}` depth 1). Iterative: safe on any input; stops at the first
 * level beyond `max`.
 */
export function tooDeep(value: unknown, max = MAX_JSON_DEPTH): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const [node, depth] = item;
    if (node === null || typeof node !== "object") continue;
    if (depth + 1 > max) return true;
    const children = Array.isArray(node) ? node : Object.values(node);
    for (const child of children) {
      if (child !== null && typeof child === "object") stack.push([child, depth + 1]);
    }
  }
  return false;
}
