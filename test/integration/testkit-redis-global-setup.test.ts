// Calls the testkit's vitest globalSetup directly with a stub project to check which Redis it
// provides: REDIS_URL verbatim, or (with no usable container runtime) a spawned redis-server.

import { pingRedis } from "@pi-fleet/testkit";
import setup from "@pi-fleet/testkit/redis-global-setup";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { TestProject } from "vitest/node";

function stubProject() {
  const provided = new Map<string, unknown>();
  const project = { provide: (key: string, value: unknown) => provided.set(key, value) };
  return { project: project as unknown as TestProject, provided };
}

afterEach(() => {
  vi.unstubAllEnvs();
});

describe("redis-global-setup", () => {
  it("provides REDIS_URL as-is and starts nothing", async () => {
    vi.stubEnv("REDIS_URL", "redis://example.invalid:1234");
    const { project, provided } = stubProject();
    const teardown = await setup(project);
    expect(provided.get("redisUrl")).toBe("redis://example.invalid:1234");
    await teardown();
  });

  it("falls through a missing @testcontainers/redis to a spawned redis-server", async () => {
    vi.stubEnv("REDIS_URL", "");
    vi.stubEnv("DOCKER_HOST", "tcp://127.0.0.1:1");
    const lines: string[] = [];
    const log = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      lines.push(String(chunk));
      return true;
    });
    const { project, provided } = stubProject();
    const teardown = await setup(project).finally(() => log.mockRestore());
    expect(lines.some((l) => l.includes("@testcontainers/redis is not installed"))).toBe(true);
    const url = provided.get("redisUrl");
    expect(url).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    const port = Number(new URL(String(url)).port);
    expect(port).not.toBe(6379);
    expect(await pingRedis(port)).toBe(true);
    await teardown();
    expect(await pingRedis(port, "127.0.0.1", 300)).toBe(false);
  });
});
