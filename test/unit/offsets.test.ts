// Stream offsets order like Redis entry ids; "just before" lets a client resume at an entry.
import { compareOffsets, offsetBefore } from "@pi-fleet/streams";
import { describe, expect, it } from "vitest";

describe("stream offsets", () => {
  it("orders by milliseconds, then sequence, numerically", () => {
    expect(compareOffsets("9-0", "10-0")).toBeLessThan(0);
    expect(compareOffsets("10-2", "10-10")).toBeLessThan(0);
    expect(compareOffsets("1795264225262-3", "1795264225262-3")).toBe(0);
    expect(compareOffsets("0", "1-0")).toBeLessThan(0);
  });

  it("computes the greatest offset strictly before an entry", () => {
    expect(offsetBefore("100-5")).toBe("100-4");
    expect(offsetBefore("100-0")).toBe("99-18446744073709551615");
    expect(compareOffsets(offsetBefore("100-0"), "100-0")).toBeLessThan(0);
    expect(compareOffsets(offsetBefore("100-0"), "99-99999")).toBeGreaterThan(0);
  });
});
