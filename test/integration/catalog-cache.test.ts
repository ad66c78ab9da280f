// The built-in model catalog (~360 KB of JSON, published by every worker at boot) is read by
// session creation, model listing and provider checks. A registry keeps the parsed document while
// the catalog's revision is unchanged, picks up another worker's publish, shares it frozen, and
// reads a catalog published without a revision (an older worker) every time.
import { connectRedis, createKeys, type Redis } from "@pi-fleet/redis";
import { type CatalogDocument, Registry } from "@pi-fleet/registry";
import { uniquePrefix } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

const keys = createKeys(uniquePrefix("catalog-cache"));
let redis: Redis;

beforeAll(async () => {
  redis = await connectRedis(inject("redisUrl"), "command", "test-catalog-cache");
});

afterAll(async () => {
  await redis.quit();
});

function doc(modelIds: string[], publishedAt: string): CatalogDocument {
  return {
    models: modelIds.map((id) => ({
      provider: "anthropic",
      id,
      name: id,
      api: "anthropic-messages",
      reasoning: true,
      input: ["text"],
      contextWindow: 200_000,
      maxTokens: 8192,
      available: false,
    })),
    envProviders: [],
    publishedAt,
  };
}

describe("model catalog cache", () => {
  it("keeps the parsed catalog while its revision is unchanged and follows a new publish", async () => {
    const gateway = new Registry(redis, keys);
    const worker1 = new Registry(redis, keys);
    const worker2 = new Registry(redis, keys);
    expect((await gateway.catalog()).models).toEqual([]);

    await worker1.publishCatalog(doc(["m-1"], "2026-11-21T00:00:00.000Z"));
    const first = await gateway.catalog();
    expect(first.models.map((m) => m.id)).toEqual(["m-1"]);
    // Unchanged revision: the same parsed document, not a new read and parse.
    expect(await gateway.catalog()).toBe(first);

    // It is shared, so it is frozen all the way down.
    expect(Object.isFrozen(first.models[0])).toBe(true);
    expect(() => (first.models as unknown[]).push({})).toThrow(TypeError);

    // Another worker publishes: the next read returns its catalog.
    await worker2.publishCatalog(doc(["m-1", "m-2"], "2026-11-21T00:00:01.000Z"));
    const second = await gateway.catalog();
    expect(second.models.map((m) => m.id)).toEqual(["m-1", "m-2"]);
    expect(await gateway.catalog()).toBe(second);
  });

  it("reads a catalog published without a revision (an older worker) every time", async () => {
    const gateway = new Registry(redis, keys);
    await redis.del(keys.catalogRevision);
    await redis.set(keys.catalog, JSON.stringify(doc(["old-1"], "2026-11-20T00:00:00.000Z")));
    const a = await gateway.catalog();
    expect(a.models.map((m) => m.id)).toEqual(["old-1"]);
    await redis.set(keys.catalog, JSON.stringify(doc(["old-2"], "2026-11-20T00:00:01.000Z")));
    expect((await gateway.catalog()).models.map((m) => m.id)).toEqual(["old-2"]);
  });
});
