// textPreview (libs/contracts): a preview cut never ends inside a surrogate pair.
import { textPreview } from "@pi-fleet/contracts";
import { describe, expect, it } from "vitest";

describe("textPreview", () => {
  it("keeps short texts whole and cuts long ones at the limit", () => {
    expect(textPreview("hello", 200)).toBe("hello");
    expect(textPreview("abcdef", 3)).toBe("abc");
  });

  it("drops the high half of an emoji the cut would split", () => {
    const text = `${"a".repeat(199)}\u{1F600}tail`;
    expect(textPreview(text, 200)).toBe("a".repeat(199));
    expect(textPreview(text, 201)).toBe(`${"a".repeat(199)}\u{1F600}`);
  });
});
