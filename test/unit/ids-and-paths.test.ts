// Ids are validated slugs and every workspace path stays under the root.
import { isEntityId, isOffset, isSlug, isStreamId, slugify } from "@pi-fleet/contracts";
import { UnsafePathError, WorkspacePaths } from "@pi-fleet/security";
import { describe, expect, it } from "vitest";

describe("ids", () => {
  it("slugifies project names and refuses what leaves nothing", () => {
    expect(slugify("My Cool App")).toBe("my-cool-app");
    expect(slugify("  Ünïcödé — Tëst  ")).toBe("unicode-test");
    expect(slugify("../../etc/passwd")).toBe("etc-passwd");
    expect(slugify("!!!")).toBeUndefined();
    expect(slugify("x".repeat(100))?.length).toBe(63);
  });

  it("rejects traversal, separators, NUL and uppercase", () => {
    for (const bad of ["..", "a/b", "a\u0000b", "ABC", "-a", "", "a.b"]) expect(isSlug(bad)).toBe(false);
    for (const bad of ["..", "a/b", "a\u0000b", "X", "_a"]) expect(isEntityId(bad)).toBe(false);
    expect(isEntityId("3f2c7a1e-0d4b-4c55-9a51-7e0a9f8b2c11")).toBe(true);
    expect(isOffset("0")).toBe(true);
    expect(isOffset("1795264225262-3")).toBe(true);
    expect(isOffset("1795264225262")).toBe(false);
    expect(isOffset("$")).toBe(false);
    // Redis entry id parts are unsigned 64-bit: 2^64 - 1 is the largest.
    expect(isOffset("18446744073709551615-18446744073709551615")).toBe(true);
    expect(isOffset("18446744073709551616-0")).toBe(false);
    expect(isOffset("1-99999999999999999999")).toBe(false);
    expect(isStreamId("0-0")).toBe(true);
    expect(isStreamId("0")).toBe(false);
  });
});

describe("WorkspacePaths", () => {
  const paths = new WorkspacePaths("/srv/ws");

  it("lays out projects and transcripts per org", () => {
    expect(paths.projectDir("acme", "web")).toBe("/srv/ws/acme/projects/web");
    expect(paths.sessionFile("acme", "web", "s-1")).toBe("/srv/ws/acme/sessions/web/s-1.jsonl");
  });

  it("throws on any id that is not a valid slug", () => {
    expect(() => paths.projectDir("acme", "..")).toThrow(UnsafePathError);
    expect(() => paths.projectDir("../x", "web")).toThrow(UnsafePathError);
    expect(() => paths.sessionFile("acme", "web", "../../etc/passwd")).toThrow(UnsafePathError);
    expect(() => paths.sessionFile("acme", "web", "a/b")).toThrow(UnsafePathError);
  });
});
