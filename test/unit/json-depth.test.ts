// The nesting limit of client JSON (apps/gateway/src/json-depth.ts): exactly MAX_JSON_DEPTH levels
// pass, one more is refused, for arrays and objects alike, and a huge depth is checked without
// recursion.
import { describe, expect, it } from "vitest";
import { MAX_JSON_DEPTH, tooDeep } from "../../apps/gateway/src/json-depth.ts";

const nestedArray = (depth: number): unknown => JSON.parse(`${"[".repeat(depth)}${"]".repeat(depth)}`);
const nestedObject = (depth: number): unknown =>
  JSON.parse(`${'{"a":'.repeat(depth - 1)}{}${"}".repeat(depth - 1)}`);

describe("tooDeep", () => {
  it("passes scalars and values up to the limit, refuses one level more", () => {
    for (const scalar of [null, 1, "x", true]) expect(tooDeep(scalar)).toBe(false);
    expect(tooDeep(nestedArray(MAX_JSON_DEPTH))).toBe(false);
    expect(tooDeep(nestedArray(MAX_JSON_DEPTH + 1))).toBe(true);
    expect(tooDeep(nestedObject(MAX_JSON_DEPTH))).toBe(false);
    expect(tooDeep(nestedObject(MAX_JSON_DEPTH + 1))).toBe(true);
    // Depth counts the deepest branch, not the number of siblings.
    expect(tooDeep({ a: nestedArray(MAX_JSON_DEPTH - 1), b: Array.from({ length: 1000 }, () => [1]) })).toBe(
      false,
    );
    expect(tooDeep({ a: [1, 2], b: nestedArray(MAX_JSON_DEPTH) })).toBe(true);
  });

  it("checks a 100,000-level value without overflowing the stack", () => {
    expect(tooDeep(nestedArray(100_000))).toBe(true);
  });
});
