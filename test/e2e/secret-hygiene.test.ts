// Secret hygiene over a real single-node process in keyed mode (issue 6 "Hardening"): after a run
// whose bash tool dumps its whole environment, and after requests built to provoke errors, no
// secret — operator token, secret key, provider keys from the environment or the API, the org's
// API key — appears in the process logs (trace level), any response body, the session's events,
// its history, the audit log, or in plaintext anywhere in Redis.
import { spawnSync } from "node:child_process";
import { type FakeLlm, openSse, startFakeLlm, uniquePrefix } from "@pi-fleet/testkit";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type Stack, startStack, stopAllStacks } from "../support/stack.ts";

const SECRETS = {
  PI_FLEET_ADMIN_TOKEN: "adm1n-t0ken-S3CRET-0123456789abcdef",
  PI_FLEET_SECRET_KEY: "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
  ANTHROPIC_API_KEY: "sk-ant-ENVSECRET-0123456789",
  OPENAI_API_KEY: "sk-openai-ENVSECRET-0123456789",
};
const CUSTOM_PROVIDER_KEY = "sk-custom-APISECRET-0123456789";
const STORED_OPENAI_KEY = "sk-stored-APISECRET-0123456789";

let llm: FakeLlm;
let stack: Stack;
let redis: Redis;
let orgKey = "";
const PREFIX = uniquePrefix("e2e secrets");
const bodies: string[] = [];

async function call(method: string, path: string, body?: unknown, token = orgKey) {
  const res = await fetch(`${stack.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  bodies.push(text);
  return { status: res.status, text, json: (text ? JSON.parse(text) : undefined) as Record<string, unknown> };
}

beforeAll(async () => {
  llm = await startFakeLlm();
  redis = new Redis(inject("redisUrl"));
  stack = await startStack({
    redisUrl: inject("redisUrl"),
    prefix: PREFIX,
    env: { ...SECRETS, LOG_LEVEL: "trace" },
  });
  const admin = SECRETS.PI_FLEET_ADMIN_TOKEN;
  expect((await call("POST", "/v1/admin/orgs", { id: "default" }, admin)).status).toBe(201);
  const key = await call("POST", "/v1/admin/orgs/default/keys", { role: "admin" }, admin);
  orgKey = key.json.key as string;
  bodies.pop(); // the one response that must hold the key: the key's creation
});

afterAll(async () => {
  await stopAllStacks();
  await llm?.close();
  await redis?.quit();
});

describe("secret hygiene", () => {
  it("keeps every secret out of logs, responses, events, history, the audit log and Redis", async () => {
    const provider = {
      provider: "fake",
      baseUrl: llm.baseUrl,
      api: "openai-completions",
      apiKey: CUSTOM_PROVIDER_KEY,
      models: [{ id: "fake-model" }],
    };
    expect((await call("PUT", "/v1/custom/providers", provider)).status).toBe(200);
    expect((await call("PUT", "/v1/auth/providers/openai/api-key", { key: STORED_OPENAI_KEY })).status).toBe(
      200,
    );

    // Requests built to provoke errors that might echo what they were sent.
    await call("GET", "/v1/projects", undefined, `${SECRETS.PI_FLEET_ADMIN_TOKEN}x`);
    await call("GET", "/v1/admin/orgs", undefined, `${orgKey}x`);
    await call("PUT", "/v1/auth/providers/openai/api-key", { key: `$${"OPENAI_API_KEY"}` });
    await call("PUT", "/v1/auth/providers/openai/api-key", {
      key: STORED_OPENAI_KEY,
      extra: STORED_OPENAI_KEY,
    });
    await call("PUT", "/v1/custom/providers", { ...provider, baseUrl: `not a url ${CUSTOM_PROVIDER_KEY}` });
    await call("POST", "/v1/projects", `{"name": "${CUSTOM_PROVIDER_KEY}"`);

    // A run whose bash tool prints the agent's whole environment into the event stream.
    const project = (await call("POST", "/v1/projects", { name: "secrets" })).json.id as string;
    const session = (await call("POST", `/v1/projects/${project}/sessions`)).json.id as string;
    const run = await call("POST", `/v1/projects/${project}/sessions/${session}/prompt`, {
      text: "[[bash:env; cat /proc/self/environ | tr '\\0' '\\n']]",
    });
    expect(run.status).toBe(200);
    const sse = await openSse(`${stack.url}/v1/projects/${project}/sessions/${session}/events?after=0`, {
      headers: { authorization: `Bearer ${orgKey}` },
    });
    await sse.waitFor((e) => e.data.includes('"run_finished"') || e.data.includes('"run_failed"'), 30_000);
    sse.close();
    const events = sse.events.map((e) => e.data).join("\n");
    // The bash tool really ran and printed an environment (PATH is always there).
    expect(events).toContain("PATH=");
    expect(events).not.toContain("REDIS_URL");
    expect(events).not.toContain(inject("redisUrl"));

    await call("GET", `/v1/projects/${project}/sessions/${session}`);
    await call("POST", `/v1/projects/${project}/sessions/${session}/commands`, { type: "get_state" });
    await call("POST", `/v1/projects/${project}/sessions/${session}/commands`, { type: "get_messages" });
    await call("GET", "/v1/audit?limit=1000");
    await call("GET", "/v1/custom/providers");
    await call("GET", "/v1/auth/providers");
    await call("GET", "/v1/keys");

    // Everything Redis holds under this stack's prefix, as text.
    const dump: string[] = [];
    let cursor = "0";
    do {
      const [next, batch] = await redis.scan(cursor, "COUNT", 1000);
      cursor = next;
      for (const k of batch) {
        if (!k.startsWith(PREFIX)) continue;
        const type = await redis.type(k);
        if (type === "string") dump.push(String(await redis.get(k)));
        else if (type === "hash") dump.push(JSON.stringify(await redis.hgetall(k)));
        else if (type === "list") dump.push(JSON.stringify(await redis.lrange(k, "0", "-1")));
        else if (type === "stream") dump.push(JSON.stringify(await redis.xrange(k, "-", "+")));
        else if (type === "set") dump.push(JSON.stringify(await redis.smembers(k)));
        else if (type === "zset") dump.push(JSON.stringify(await redis.zrange(k, "0", "-1")));
      }
    } while (cursor !== "0");

    const places: Record<string, string> = {
      logs: stack.logs(),
      responses: bodies.join("\n"),
      events,
      redis: dump.join("\n"),
    };
    expect(stack.logs().length).toBeGreaterThan(1000); // trace logging really produced output
    const secrets = {
      ...SECRETS,
      SECRET_KEY_BASE64: Buffer.from(SECRETS.PI_FLEET_SECRET_KEY, "hex").toString("base64"),
      CUSTOM_PROVIDER_KEY,
      STORED_OPENAI_KEY,
      // `pfk_<hex key id>_<base64url secret>`: the secret itself may contain "_".
      ORG_API_KEY_SECRET: orgKey.split("_").slice(2).join("_"),
    };
    expect(secrets.ORG_API_KEY_SECRET).toHaveLength(43); // the whole 32-byte secret, not a fragment
    const leaks: string[] = [];
    for (const [where, text] of Object.entries(places)) {
      for (const [name, value] of Object.entries(secrets)) {
        if (text.includes(value)) leaks.push(`${name} in ${where}`);
      }
    }
    expect(leaks).toEqual([]);
    // The provider did get its key: secrets are kept from everyone but their one consumer.
    expect(llm.requests.some((r) => r.authorization === `Bearer ${CUSTOM_PROVIDER_KEY}`)).toBe(true);
  });
});

/** Why the bwrap case cannot run here, if it cannot (bubblewrap missing or no user namespaces). */
function bwrapUnavailable(): string | undefined {
  const probe = spawnSync("/usr/bin/bwrap", ["--unshare-all", "--ro-bind", "/", "/", "true"], {
    stdio: "ignore",
  });
  return probe.status === 0 ? undefined : "bubblewrap cannot create a sandbox on this machine";
}

describe.skipIf(bwrapUnavailable() !== undefined)("secret hygiene in the bubblewrap sandbox", () => {
  it("hides the worker's processes: no /proc/<pid>/environ of the worker shows a secret", async () => {
    // Without the sandbox the agent runs as the worker's user and could read the worker's
    // /proc/<pid>/environ (docs/security.md, "Residual risks"); in bwrap's PID namespace the
    // worker does not exist.
    const sandboxed = await startStack({
      redisUrl: inject("redisUrl"),
      prefix: uniquePrefix("e2e secrets bwrap"),
      env: { ...SECRETS, PI_FLEET_SANDBOX: "bwrap", LOG_LEVEL: "warn" },
    });
    const admin = SECRETS.PI_FLEET_ADMIN_TOKEN;
    const as = async (method: string, path: string, body?: unknown, token = admin) => {
      const res = await fetch(`${sandboxed.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return (await res.json()) as Record<string, unknown>;
    };
    await as("POST", "/v1/admin/orgs", { id: "default" });
    const key = (await as("POST", "/v1/admin/orgs/default/keys", { role: "admin" })).key as string;
    await as(
      "PUT",
      "/v1/custom/providers",
      {
        provider: "fake",
        baseUrl: llm.baseUrl,
        api: "openai-completions",
        apiKey: CUSTOM_PROVIDER_KEY,
        models: [{ id: "fake-model" }],
      },
      key,
    );
    const project = (await as("POST", "/v1/projects", { name: "bwrap-secrets" }, key)).id as string;
    const session = (await as("POST", `/v1/projects/${project}/sessions`, undefined, key)).id as string;
    await as(
      "POST",
      `/v1/projects/${project}/sessions/${session}/prompt`,
      {
        text: "[[bash:echo PIDS $(ls -d /proc/[0-9]* | wc -l); cat /proc/[0-9]*/environ | tr '\\0' '\\n'; cat /proc/$PPID/environ]]",
      },
      key,
    );
    const sse = await openSse(`${sandboxed.url}/v1/projects/${project}/sessions/${session}/events?after=0`, {
      headers: { authorization: `Bearer ${key}` },
    });
    await sse.waitFor((e) => e.data.includes('"run_finished"') || e.data.includes('"run_failed"'), 30_000);
    sse.close();
    const events = sse.events.map((e) => e.data).join("\n");
    expect(events).toContain("PIDS ");
    expect(events).toContain("PATH=");
    for (const [name, value] of Object.entries({ ...SECRETS, CUSTOM_PROVIDER_KEY })) {
      expect(events.includes(value), `${name} visible inside the sandbox`).toBe(false);
    }
    expect(events).not.toContain("REDIS_URL");
    await sandboxed.stop();
  });
});
