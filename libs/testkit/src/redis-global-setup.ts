// Vitest `globalSetup` that gives integration/e2e projects one Redis for the whole run, exposed
// to tests as `inject("redisUrl")`. Source, in order: REDIS_URL; a testcontainers Redis when a
// container runtime is reachable and @testcontainers/redis is installed; a spawned redis-server.

import { existsSync } from "node:fs";
import type { TestProject } from "vitest/node";
import "./provided-context.ts";
import { spawnRedis } from "./redis-server.ts";

interface StartedContainer {
  getConnectionUrl(): string;
  stop(): Promise<unknown>;
}

function log(line: string): void {
  process.stdout.write(`[redis-global-setup] ${line}\n`);
}

function containerRuntimeReachable(): boolean {
  return Boolean(process.env.DOCKER_HOST) || existsSync("/var/run/docker.sock");
}

/** Tries a testcontainers Redis; returns undefined (with a one-line note) when unavailable. */
async function tryTestcontainers(): Promise<StartedContainer | undefined> {
  // The single sanctioned dynamic import: an optional dependency that is usually not installed.
  const specifier = "@testcontainers/redis";
  let mod: unknown;
  try {
    mod = await import(/* @vite-ignore */ specifier);
  } catch {
    log("container runtime found but @testcontainers/redis is not installed; spawning redis-server");
    return undefined;
  }
  const ctor = (mod as { RedisContainer?: unknown }).RedisContainer;
  if (typeof ctor !== "function") {
    log("@testcontainers/redis has no RedisContainer export; spawning redis-server");
    return undefined;
  }
  try {
    const container = new (ctor as new (image: string) => { start(): Promise<StartedContainer> })(
      "redis:7-alpine",
    );
    return await container.start();
  } catch (err) {
    log(`testcontainers failed (${(err as Error).message}); spawning redis-server`);
    return undefined;
  }
}

/**
 * Provides `redisUrl` to the project and returns the teardown that releases whatever was started
 * (nothing for REDIS_URL). Throws if no source works (e.g. redis-server missing, see spawnRedis).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const fromEnv = process.env.REDIS_URL;
  if (fromEnv) {
    project.provide("redisUrl", fromEnv);
    return async () => {};
  }
  if (containerRuntimeReachable()) {
    const container = await tryTestcontainers();
    if (container) {
      const url = container.getConnectionUrl();
      log(`using testcontainers Redis at ${url}`);
      project.provide("redisUrl", url);
      return async () => {
        await container.stop();
      };
    }
  }
  const redis = await spawnRedis();
  log(`spawned redis-server at ${redis.url} (pid ${redis.pid})`);
  project.provide("redisUrl", redis.url);
  return () => redis.stop();
}
