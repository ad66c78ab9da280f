// Test projects: unit (pure, no I/O), integration (real Redis, in-process gateway/worker,
// scripted fake LLM, loopback HTTP), e2e (real child processes over loopback), chaos (kills,
// pauses and Redis restarts of real child processes; each test spawns its own redis-server).
// Unit and integration files run two at a time (each integration file has its own key prefix);
// then e2e, then chaos, each one file at a time and alone: their timing checks (failover within
// the lease TTL + 2 s, …) are not shared with other test files' CPU.
import { defineConfig } from "vitest/config";

const redisSetup = ["libs/testkit/src/redis-global-setup.ts"];

export default defineConfig({
  ssr: { resolve: { conditions: ["@pi-fleet/source"] } },
  test: {
    reporters: ["default"],
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          sequence: { groupOrder: 0 },
          include: ["test/unit/**/*.test.ts", "libs/*/test/**/*.test.ts"],
          testTimeout: 20_000,
        },
      },
      {
        extends: true,
        test: {
          name: "integration",
          sequence: { groupOrder: 0 },
          include: ["test/integration/**/*.test.ts"],
          globalSetup: redisSetup,
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        extends: true,
        test: {
          name: "e2e",
          sequence: { groupOrder: 1 },
          include: ["test/e2e/**/*.test.ts"],
          globalSetup: redisSetup,
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        extends: true,
        test: {
          name: "chaos",
          sequence: { groupOrder: 2 },
          include: ["test/chaos/**/*.test.ts"],
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 60_000,
          retry: 0,
        },
      },
    ],
  },
});
