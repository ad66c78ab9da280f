// RuntimeCache and OrgRuntime: isolation per org, revisions, provider validation, availability.
import { describe, expect, it } from "vitest";
import { listBuiltinModels, type OrgRuntimeSpec, type ProviderSpec, RuntimeCache } from "../src/index.ts";

const local = (overrides: Partial<ProviderSpec> = {}): ProviderSpec => ({
  provider: "acme-local",
  baseUrl: "http://127.0.0.1:9/v1",
  api: "openai-completions",
  models: [{ id: "m1", name: "Model One", contextWindow: 32_000 }],
  ...overrides,
});
const spec = (overrides: Partial<OrgRuntimeSpec> = {}): OrgRuntimeSpec => ({
  orgId: "acme",
  revision: "1",
  providers: [],
  builtinKeys: {},
  ...overrides,
});

describe("RuntimeCache", () => {
  it("caches by orgId and rebuilds on a new revision or after evict", async () => {
    const cache = new RuntimeCache();
    const a = await cache.get(spec());
    expect(await cache.get(spec())).toBe(a);
    const b = await cache.get(spec({ revision: "2" }));
    expect(b).not.toBe(a);
    expect(b.revision).toBe("2");
    expect(await cache.get(spec({ orgId: "other" }))).not.toBe(b);
    cache.evict("acme");
    expect(await cache.get(spec({ revision: "2" }))).not.toBe(b);
  });

  it("lists custom providers first; a keyless custom provider is available", async () => {
    const rt = await new RuntimeCache().get(spec({ providers: [local()] }));
    const rows = rt.listModels();
    expect(rows[0]).toEqual({
      provider: "acme-local",
      id: "m1",
      name: "Model One",
      api: "openai-completions",
      reasoning: false,
      available: true,
      input: ["text"],
      contextWindow: 32_000,
      maxTokens: 16_384,
      defaultThinkingLevel: "off",
    });
    expect(rows.length).toBeGreaterThan(1000);
    expect(rows.filter((r) => r.available).map((r) => r.provider)).toEqual(["acme-local"]);
    expect(rt.findModel("acme-local", "m1")?.available).toBe(true);
    expect(rt.findModel("acme-local", "nope")).toBeUndefined();
  });

  it("makes built-in providers available only with a key, per org", async () => {
    const cache = new RuntimeCache();
    const withKey = await cache.get(spec({ builtinKeys: { anthropic: "sk-ant-test", openai: "" } }));
    const without = await cache.get(spec({ orgId: "b" }));
    const providers = new Set(
      withKey
        .listModels()
        .filter((r) => r.available)
        .map((r) => r.provider),
    );
    expect([...providers]).toEqual(["anthropic"]);
    expect(without.listModels().some((r) => r.available)).toBe(false);
    const reasoning = withKey.listModels().find((r) => r.provider === "anthropic" && r.reasoning);
    expect(reasoning?.defaultThinkingLevel).toBe("medium");
  });

  it("refuses custom provider ids equal to a built-in id, bad URLs, duplicates and unknown key targets", async () => {
    const cache = new RuntimeCache();
    const refused = async (s: OrgRuntimeSpec) =>
      expect(cache.get(s)).rejects.toMatchObject({ name: "PiRuntimeError", code: "invalid_provider" });
    await refused(spec({ providers: [local({ provider: "openai" })] }));
    await refused(spec({ providers: [local({ provider: "anthropic" })] }));
    await refused(spec({ providers: [local({ provider: "has space" })] }));
    await refused(spec({ providers: [local({ baseUrl: "file:///etc/passwd" })] }));
    await refused(spec({ providers: [local(), local()] }));
    await refused(spec({ providers: [local({ models: [] })] }));
    await refused(spec({ providers: [local({ models: [{ id: "m", maxTokens: -1 }] })] }));
    await refused(spec({ builtinKeys: { "not-a-provider": "k" } }));
    // a failed build is not cached
    expect((await cache.get(spec())).listModels().length).toBeGreaterThan(0);
  });
});

describe("listBuiltinModels", () => {
  it("lists the built-in catalog with available:false", async () => {
    const rows = await listBuiltinModels();
    expect(rows.length).toBeGreaterThan(1000);
    expect(rows.every((r) => !r.available)).toBe(true);
    expect(rows.some((r) => r.provider === "anthropic")).toBe(true);
    expect(await listBuiltinModels()).not.toBe(rows);
  });
});
