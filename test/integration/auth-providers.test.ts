// Per-org provider credentials (`/v1/auth/*`): status from the model catalog, keys sealed with
// AES-256-GCM in Redis (never returned, logged, or visible to the agent), opened by the worker
// only, effective on the next run without a restart; subscription login answered as unsupported.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadEnv } from "@pi-fleet/config";
import { type Gateway, startGateway } from "@pi-fleet/gateway";
import { REDACT_PATHS } from "@pi-fleet/observability";
import { connectRedis, type Redis } from "@pi-fleet/redis";
import { SecretBox } from "@pi-fleet/security";
import { type FakeLlm, startFakeLlm, uniquePrefix, waitFor } from "@pi-fleet/testkit";
import { startWorker, type WorkerNode } from "@pi-fleet/worker";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const SECRET_KEY = randomBytes(32);
const OPENAI_KEY = `sk-openai-${randomBytes(12).toString("hex")}`;

interface Row {
  provider: string;
  name: string;
  configured: boolean;
  credentialType?: string;
  source?: string;
  supportsApiKey: boolean;
  supportsSubscription: boolean;
  modelCount: number;
  availableModelCount: number;
}
type Call = InProcessStack["call"];

let stack: InProcessStack;
let redis: Redis;
let session = "";

async function providers(call: Call): Promise<Row[]> {
  const res = await call("GET", "/v1/auth/providers");
  expect(res.status).toBe(200);
  return (res.json as { providers: Row[] }).providers;
}

/** Runs one prompt on the session and waits until it ended; returns the run's final status. */
async function runPrompt(call: Call, project: string, sessionId: string, text: string): Promise<string> {
  const res = await call("POST", `/v1/projects/${project}/sessions/${sessionId}/prompt`, { text });
  expect(res.status).toBe(200);
  const { runId } = res.json as { runId: string };
  let status = "";
  await waitFor(
    async () => {
      const run = await call("GET", `/v1/projects/${project}/sessions/${sessionId}/runs/${runId}`);
      status = (run.json as { status: string }).status;
      return !["queued", "running"].includes(status);
    },
    { timeoutMs: 15_000 },
  );
  return status;
}

async function availableProviders(call: Call, project: string, sessionId: string): Promise<Set<string>> {
  const res = await call("POST", `/v1/projects/${project}/sessions/${sessionId}/commands`, {
    type: "get_available_models",
  });
  expect(res.status).toBe(200);
  const models = (res.json as { data: { models: { provider: string }[] } }).data.models;
  return new Set(models.map((m) => m.provider));
}

/** Every value stored under `prefix`, whatever its type, as one string. */
async function dumpRedis(client: Redis, prefix: string): Promise<string> {
  const out: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 500);
    cursor = next;
    for (const key of keys) {
      const type = await client.type(key);
      out.push(key);
      if (type === "string") out.push((await client.get(key)) ?? "");
      else if (type === "hash") out.push(JSON.stringify(await client.hgetall(key)));
      else if (type === "list") out.push(JSON.stringify(await client.lrange(key, 0, -1)));
      else if (type === "set") out.push(JSON.stringify(await client.smembers(key)));
      else if (type === "zset") out.push(JSON.stringify(await client.zrange(key, "0", "-1")));
      else if (type === "stream") out.push(JSON.stringify(await client.xrange(key, "-", "+")));
    }
  } while (cursor !== "0");
  return out.join("\n");
}

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "auth", {
    env: { PI_FLEET_SECRET_KEY: SECRET_KEY.toString("base64") },
  });
  redis = await connectRedis(inject("redisUrl"), "command", "test-auth-providers");
  await stack.call("POST", "/v1/projects", { name: "auth" });
  session = ((await stack.call("POST", "/v1/projects/auth/sessions", {})).json as { id: string }).id;
});

afterAll(async () => {
  await redis?.quit();
  await stack?.close();
});

describe("provider API keys", () => {
  it("lists the catalog's built-in providers, none configured", async () => {
    const rows = await providers(stack.call);
    const catalog = (await stack.call("GET", "/v1/models")).json as { models: { provider: string }[] };
    const builtin = new Set(catalog.models.map((m) => m.provider).filter((p) => p !== "fake"));
    expect(new Set(rows.map((r) => r.provider))).toEqual(builtin);
    expect(rows.map((r) => r.provider)).toEqual(expect.arrayContaining(["openai", "anthropic"]));
    for (const row of rows) {
      expect(row).toMatchObject({
        configured: false,
        supportsApiKey: true,
        supportsSubscription: false,
        availableModelCount: 0,
      });
      expect(row.source).toBeUndefined();
      expect(row.modelCount).toBe(catalog.models.filter((m) => m.provider === row.provider).length);
    }
  });

  it("stores a key encrypted, reports it as stored, never returns it, and the worker uses it", async () => {
    const put = await stack.call("PUT", "/v1/auth/providers/openai/api-key", { key: ` ${OPENAI_KEY}\n` });
    expect(put).toEqual({ status: 200, json: { ok: true } });

    const openai = (await providers(stack.call)).find((r) => r.provider === "openai")!;
    expect(openai).toMatchObject({ configured: true, credentialType: "api_key", source: "stored" });
    expect(openai.availableModelCount).toBe(openai.modelCount);

    // In Redis: sealed with the configured key (and bound to this org and provider), not the key.
    const raw = await redis.hget(`${stack.prefix}:provider-creds:default`, "openai");
    expect(raw).toBeTruthy();
    expect(raw).not.toContain(OPENAI_KEY);
    const stored = JSON.parse(raw!) as { type: string; sealed: string };
    expect(stored.type).toBe("api_key");
    expect(stored.sealed).toMatch(/^enc:v1:/);
    const box = new SecretBox({ key: SECRET_KEY, allowPlaintext: false });
    expect(box.open(stored.sealed, "provider-credential:default:openai")).toBe(OPENAI_KEY);

    // Nothing the API serves shows it.
    for (const path of ["/v1/auth/providers", "/v1/models", "/v1/custom/providers", "/openapi.json"]) {
      const res = await fetch(`${stack.gateway.url}${path}`);
      expect(await res.text()).not.toContain(OPENAI_KEY);
    }
    const models = (await stack.call("GET", "/v1/models")).json as {
      models: { provider: string; available: boolean }[];
    };
    expect(models.models.filter((m) => m.provider === "openai").every((m) => m.available)).toBe(true);

    // The worker opened it: the session's runtime now has auth for openai (no restart).
    expect(await availableProviders(stack.call, "auth", session)).toContain("openai");
  });

  it("keeps keys out of the agent's tools, the event stream and every Redis value", async () => {
    const status = await runPrompt(stack.call, "auth", session, "[[bash:env; echo done]]");
    expect(status).toBe("finished");
    const messages = await stack.call("GET", `/v1/projects/auth/sessions/${session}`);
    const transcript = JSON.stringify(messages.json);
    expect(transcript).toContain("done");
    const everything = await dumpRedis(redis, stack.prefix);
    expect(everything).toContain("tool said:");
    for (const secret of [OPENAI_KEY, "sk-fake", SECRET_KEY.toString("base64"), SECRET_KEY.toString("hex")]) {
      expect(transcript).not.toContain(secret);
      expect(everything).not.toContain(secret);
    }
  });

  it("removes a key: not configured, gone from Redis, gone from the worker's runtime", async () => {
    expect(await stack.call("DELETE", "/v1/auth/providers/openai")).toEqual({
      status: 200,
      json: { ok: true },
    });
    const openai = (await providers(stack.call)).find((r) => r.provider === "openai")!;
    expect(openai).toMatchObject({ configured: false, availableModelCount: 0 });
    expect(openai.source).toBeUndefined();
    expect(await redis.hexists(`${stack.prefix}:provider-creds:default`, "openai")).toBe(0);
    expect(await availableProviders(stack.call, "auth", session)).not.toContain("openai");
    // Idempotent.
    expect((await stack.call("DELETE", "/v1/auth/providers/openai")).status).toBe(200);
  });

  it("refuses unknown providers, custom providers and malformed ids with 400", async () => {
    const unknown = await stack.call("PUT", "/v1/auth/providers/no-such-provider/api-key", { key: "sk-x" });
    expect(unknown.status).toBe(400);
    expect((unknown.json as { code: string }).code).toBe("PF_ERR_PROVIDER_NOT_FOUND");
    const custom = await stack.call("PUT", "/v1/auth/providers/fake/api-key", { key: "sk-x" });
    expect(custom.status).toBe(400);
    expect((custom.json as { code: string; error: string }).error).toContain("/v1/custom/providers");
    const badId = await stack.call("PUT", "/v1/auth/providers/a%20b/api-key", { key: "sk-x" });
    expect(badId.status).toBe(400);
    const del = await stack.call("DELETE", "/v1/auth/providers/no-such-provider");
    expect(del.status).toBe(400);
    expect((del.json as { code: string }).code).toBe("PF_ERR_PROVIDER_NOT_FOUND");
  });

  it("refuses keys pi would resolve (`!cmd`, `$VAR`) and malformed bodies, without echoing them", async () => {
    const bad: [unknown, string][] = [
      [{ key: "!cat /etc/passwd" }, "PF_ERR_PROVIDER_KEY_INVALID"],
      [{ key: "sk-$HOME" }, "PF_ERR_PROVIDER_KEY_INVALID"],
      [{ key: ["$", "{OPENAI_API_KEY}"].join("") }, "PF_ERR_PROVIDER_KEY_INVALID"],
      [{ key: "sk with space" }, "PF_ERR_PROVIDER_KEY_INVALID"],
      [{ key: "sk-\u0000nul" }, "PF_ERR_PROVIDER_KEY_INVALID"],
      [{ key: "   " }, "PF_ERR_PROVIDER_KEY_INVALID"],
      [{ key: "" }, "PF_ERR_REQUEST_INVALID"],
      [{ key: `sk-${"x".repeat(5000)}` }, "PF_ERR_REQUEST_INVALID"],
      [{ key: "sk-ok", extra: 1 }, "PF_ERR_REQUEST_INVALID"],
      [{}, "PF_ERR_REQUEST_INVALID"],
    ];
    for (const [body, code] of bad) {
      const res = await stack.call("PUT", "/v1/auth/providers/anthropic/api-key", body);
      expect(res.status, JSON.stringify(body).slice(0, 60)).toBe(400);
      expect((res.json as { code: string }).code).toBe(code);
      const key = (body as { key?: string }).key;
      if (key?.trim()) expect(JSON.stringify(res.json)).not.toContain(key.trim());
    }
    expect((await providers(stack.call)).find((r) => r.provider === "anthropic")?.configured).toBe(false);
  });

  it("answers the subscription endpoints honestly: unsupported, no flows", async () => {
    for (const body of [undefined, {}]) {
      const start = await stack.call("POST", "/v1/auth/providers/anthropic/subscription/start", body);
      expect(start.status).toBe(400);
      expect(start.json).toMatchObject({
        code: "PF_ERR_AUTH_SUBSCRIPTION_UNSUPPORTED",
        error: "subscription login is not supported by this deployment",
      });
    }
    for (const method of ["GET", "DELETE"]) {
      const res = await stack.call(method, "/v1/auth/subscription/flow-1");
      expect(res.status).toBe(404);
      expect((res.json as { code: string }).code).toBe("PF_ERR_AUTH_FLOW_NOT_FOUND");
    }
    const cont = await stack.call("POST", "/v1/auth/subscription/flow-1/continue", { value: "code" });
    expect(cont.status).toBe(404);
    expect((cont.json as { code: string }).code).toBe("PF_ERR_AUTH_FLOW_NOT_FOUND");
    for (const body of [{}, { value: 1 }, { value: "x", extra: true }]) {
      const res = await stack.call("POST", "/v1/auth/subscription/flow-1/continue", body);
      expect(res.status).toBe(400);
      expect((res.json as { code: string }).code).toBe("PF_ERR_REQUEST_INVALID");
    }
  });
});

describe("custom provider keys", () => {
  const keyOf = () => redis.hget(`${stack.prefix}:provider-keys:default`, "fake");

  it("are sealed in Redis and opened by the worker: the fake LLM sees the key", async () => {
    const stored = await keyOf();
    expect(stored).toMatch(/^enc:v1:/);
    expect(stored).not.toContain("sk-fake");
    stack.fake.reset();
    expect(await runPrompt(stack.call, "auth", session, "[[reply:hello]]")).toBe("finished");
    expect(stack.fake.requests.length).toBeGreaterThan(0);
    for (const r of stack.fake.requests) expect(r.authorization).toBe("Bearer sk-fake");
  });

  it("take effect on the next run of an open session when replaced, without a restart", async () => {
    const put = await stack.call("PUT", "/v1/custom/providers", {
      provider: "fake",
      baseUrl: stack.fake.baseUrl,
      api: "openai-completions",
      apiKey: "sk-rotated",
      models: [{ id: "fake-model" }],
    });
    expect(put.status).toBe(200);
    expect(await keyOf()).not.toContain("sk-rotated");
    stack.fake.reset();
    expect(await runPrompt(stack.call, "auth", session, "[[reply:rotated]]")).toBe("finished");
    expect(stack.fake.requests.at(-1)?.authorization).toBe("Bearer sk-rotated");
  });

  it("still read legacy plaintext values, picked up even without a revision bump", async () => {
    await redis.hset(`${stack.prefix}:provider-keys:default`, "fake", "sk-legacy");
    stack.fake.reset();
    expect(await runPrompt(stack.call, "auth", session, "[[reply:legacy]]")).toBe("finished");
    expect(stack.fake.requests.at(-1)?.authorization).toBe("Bearer sk-legacy");
  });
});

describe("without PI_FLEET_SECRET_KEY (open mode) and in the logs", () => {
  let fake: FakeLlm;
  let workspace: string;
  let worker: WorkerNode;
  let gateway: Gateway;
  let prefix: string;
  const lines: string[] = [];
  const call: Call = async (method, path, body) => {
    const res = await fetch(`${gateway.url}${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as unknown };
  };

  beforeAll(async () => {
    fake = await startFakeLlm();
    workspace = await mkdtemp(join(tmpdir(), "pf-auth-plain-"));
    prefix = uniquePrefix("auth-plain");
    const base = {
      REDIS_URL: inject("redisUrl"),
      PORT: "0",
      WORKSPACE_DIR: workspace,
      PI_FLEET_KEY_PREFIX: prefix,
    };
    // Everything at trace level, with the production redaction, into memory.
    const logger = pino(
      { level: "trace", redact: { paths: REDACT_PATHS, censor: "[redacted]" } },
      { write: (line: string) => void lines.push(line) },
    );
    worker = await startWorker(loadEnv({ ...base, PI_FLEET_WORKER_ID: "plain-w1" }), logger, {});
    gateway = await startGateway(loadEnv(base), logger);
  });

  afterAll(async () => {
    await gateway?.close();
    await worker?.close(0);
    await fake?.close();
    await rm(workspace, { recursive: true, force: true });
  });

  it("stores under the plain: marker, warns once at boot, works, and never logs a key", async () => {
    const warnings = lines.filter((l) => l.includes("stored unencrypted"));
    expect(warnings).toHaveLength(1);
    expect(
      await call("PUT", "/v1/custom/providers", {
        provider: "fake",
        baseUrl: fake.baseUrl,
        api: "openai-completions",
        apiKey: "sk-plain-custom",
        models: [{ id: "fake-model" }],
      }),
    ).toMatchObject({ status: 200 });
    expect(await call("PUT", "/v1/auth/providers/openai/api-key", { key: OPENAI_KEY })).toMatchObject({
      status: 200,
    });
    expect(await redis.hget(`${prefix}:provider-keys:default`, "fake")).toBe("plain:sk-plain-custom");
    const cred = JSON.parse((await redis.hget(`${prefix}:provider-creds:default`, "openai")) ?? "{}") as {
      sealed: string;
    };
    expect(cred.sealed).toBe(`plain:${OPENAI_KEY}`);
    expect((await providers(call)).find((r) => r.provider === "openai")?.source).toBe("stored");

    await call("POST", "/v1/projects", { name: "plain" });
    const id = ((await call("POST", "/v1/projects/plain/sessions", {})).json as { id: string }).id;
    expect(await runPrompt(call, "plain", id, "[[reply:hi]]")).toBe("finished");
    expect(fake.requests.at(-1)?.authorization).toBe("Bearer sk-plain-custom");
    expect(await availableProviders(call, "plain", id)).toContain("openai");
    // Refused keys and a failing run leave no trace of a key either.
    await call("PUT", "/v1/auth/providers/openai/api-key", { key: "!echo sk-refused-secret" });
    await call("PUT", "/v1/auth/providers/openai/api-key", { key: "sk-$refused-secret" });
    expect(await runPrompt(call, "plain", id, "[[fail:401]]")).toBe("failed");

    expect(lines.length).toBeGreaterThan(10);
    const log = lines.join("");
    for (const secret of [OPENAI_KEY, "sk-plain-custom", "refused-secret"]) expect(log).not.toContain(secret);
  });
});
