// Creating the same project from two gateways at once: every request gets the one project (the
// loser of the race used to read a half-written record and answer 500).
import { connectRedis, createKeys, type Redis } from "@pi-fleet/redis";
import { Registry } from "@pi-fleet/registry";
import { uniquePrefix } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

let a: Redis;
let b: Redis;

beforeAll(async () => {
  a = await connectRedis(inject("redisUrl"), "command", "test-create-race-a");
  b = await connectRedis(inject("redisUrl"), "command", "test-create-race-b");
});

afterAll(async () => {
  await a?.quit();
  await b?.quit();
});

describe("upsertProject", () => {
  it("gives every concurrent creator the same, complete project", async () => {
    const keys = createKeys(uniquePrefix("create-race"));
    const registries = [new Registry(a, keys), new Registry(b, keys)];
    for (let round = 0; round < 100; round++) {
      const id = `race-${round}`;
      const results = await Promise.all(
        Array.from({ length: 4 }, (_, i) => registries[i % 2]!.upsertProject("acme", id, `Race ${round}`)),
      );
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect(new Set(results.map((r) => r.project.createdAt)).size).toBe(1);
      expect(results.every((r) => r.project.id === id && r.project.name === `Race ${round}`)).toBe(true);
    }
  });
});
