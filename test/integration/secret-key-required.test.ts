// Keyed mode without PI_FLEET_SECRET_KEY: the boot warning says provider keys cannot be stored
// (not that they are stored unencrypted), and every route that stores a provider key answers 503
// PF_ERR_SECRET_KEY_REQUIRED naming the variable (never a 500), storing nothing. A custom provider
// without a key is still accepted. Its own file: the boot warning is emitted once per process.
import { randomBytes } from "node:crypto";
import { connectRedis, type Redis } from "@pi-fleet/redis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const ADMIN = `admin-${randomBytes(16).toString("hex")}`;

let stack: InProcessStack;
let redis: Redis;
let orgAdmin = "";
const lines: string[] = [];

beforeAll(async () => {
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(line) });
  stack = await startInProcessStack(inject("redisUrl"), "secret-key-required", {
    env: { PI_FLEET_ADMIN_TOKEN: ADMIN },
    logger,
  });
  redis = await connectRedis(inject("redisUrl"), "command", "test-secret-key-required");
  expect((await stack.call("POST", "/v1/admin/orgs", { id: "acme" }, ADMIN)).status).toBe(201);
  const key = await stack.call("POST", "/v1/admin/orgs/acme/keys", { role: "admin" }, ADMIN);
  expect(key.status).toBe(201);
  orgAdmin = (key.json as { key: string }).key;
});

afterAll(async () => {
  await redis?.quit();
  await stack?.close();
});

describe("keyed mode without PI_FLEET_SECRET_KEY", () => {
  it("warns at boot that provider keys cannot be stored, not that they are stored unencrypted", () => {
    const warnings = lines.filter((l) => l.includes("PI_FLEET_SECRET_KEY"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("cannot be stored through the API");
    expect(lines.join("")).not.toContain("stored unencrypted");
  });

  it("answers 503 PF_ERR_SECRET_KEY_REQUIRED to PUT /v1/custom/providers with an apiKey, storing nothing", async () => {
    const put = await stack.call(
      "PUT",
      "/v1/custom/providers",
      {
        provider: "fake",
        baseUrl: stack.fake.baseUrl,
        api: "openai-completions",
        apiKey: "sk-never-stored",
        models: [{ id: "fake-model" }],
      },
      orgAdmin,
    );
    expect(put.status).toBe(503);
    const body = put.json as { code: string; error: string };
    expect(body.code).toBe("PF_ERR_SECRET_KEY_REQUIRED");
    expect(body.error).toContain("PI_FLEET_SECRET_KEY");
    expect(body.error).not.toContain("sk-never-stored");
    const list = await stack.call("GET", "/v1/custom/providers", undefined, orgAdmin);
    expect(list).toEqual({ status: 200, json: { providers: [] } });
    expect(await redis.hgetall(`${stack.prefix}:provider-keys:acme`)).toEqual({});
  });

  it("answers 503 PF_ERR_SECRET_KEY_REQUIRED to PUT /v1/auth/providers/{provider}/api-key", async () => {
    const put = await stack.call(
      "PUT",
      "/v1/auth/providers/openai/api-key",
      { key: "sk-openai-x" },
      orgAdmin,
    );
    expect(put.status).toBe(503);
    const body = put.json as { code: string; error: string };
    expect(body.code).toBe("PF_ERR_SECRET_KEY_REQUIRED");
    expect(body.error).toContain("PI_FLEET_SECRET_KEY");
    expect(await redis.hgetall(`${stack.prefix}:provider-creds:acme`)).toEqual({});
  });

  it("still stores a custom provider without a key", async () => {
    const put = await stack.call(
      "PUT",
      "/v1/custom/providers",
      {
        provider: "nokey",
        baseUrl: stack.fake.baseUrl,
        api: "openai-completions",
        models: [{ id: "fake-model" }],
      },
      orgAdmin,
    );
    expect(put.status).toBe(200);
    expect(put.json).toMatchObject({ provider: "nokey", apiKeyConfigured: false });
  });
});
