// The LiteLLM preset (`LITELLM_*`): every org gets the custom provider `litellm`, listed as
// available; a session without a model runs on LITELLM_DEFAULT_MODEL end to end with the
// operator's key as bearer token; the key never shows in an API response, in Redis or in the
// agent's bash; an org's own `litellm` provider replaces the preset. The fake LLM plays LiteLLM.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadEnv, takeSecrets } from "@pi-fleet/config";
import { type Gateway, startGateway } from "@pi-fleet/gateway";
import { createLogger } from "@pi-fleet/observability";
import { connectRedis, type Redis } from "@pi-fleet/redis";
import { type FakeLlm, openSse, startFakeLlm, uniquePrefix, waitFor } from "@pi-fleet/testkit";
import { startWorker, type WorkerNode } from "@pi-fleet/worker";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

const KEY = `sk-litellm-${randomBytes(12).toString("hex")}`;
const ORG_KEY = `sk-org-own-${randomBytes(12).toString("hex")}`;
const PROJECT = "lite";

let fake: FakeLlm;
let worker: WorkerNode;
let gateway: Gateway;
let redis: Redis;
let workspace = "";
let prefix = "";

interface ModelRow {
  provider: string;
  id: string;
  available: boolean;
  reasoning: boolean;
  contextWindow: number;
  maxTokens: number;
}

async function call(
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${gateway.url}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as unknown };
}

async function models(path = "/v1/models"): Promise<ModelRow[]> {
  const res = await call("GET", path);
  expect(res.status).toBe(200);
  return (res.json as { models: ModelRow[] }).models;
}

async function newSession(body: Record<string, unknown> = {}): Promise<string> {
  const res = await call("POST", `/v1/projects/${PROJECT}/sessions`, body);
  expect(res.status).toBe(200);
  return (res.json as { id: string }).id;
}

/** Runs one prompt and waits for its end; returns the run id. */
async function runPrompt(session: string, text: string): Promise<string> {
  const res = await call("POST", `/v1/projects/${PROJECT}/sessions/${session}/prompt`, { text });
  expect(res.status).toBe(200);
  const { runId } = res.json as { runId: string };
  let run: { status: string; error?: unknown } = { status: "queued" };
  await waitFor(
    async () => {
      run = (await call("GET", `/v1/projects/${PROJECT}/sessions/${session}/runs/${runId}`))
        .json as typeof run;
      return !["queued", "running"].includes(run.status);
    },
    { timeoutMs: 15_000 },
  );
  expect(run).toMatchObject({ status: "finished" });
  return runId;
}

/** Every value stored under `prefix`, whatever its type, as one string. */
async function dumpRedis(): Promise<string> {
  const out: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 500);
    cursor = next;
    for (const key of keys) {
      const type = await redis.type(key);
      out.push(key);
      if (type === "string") out.push((await redis.get(key)) ?? "");
      else if (type === "hash") out.push(JSON.stringify(await redis.hgetall(key)));
      else if (type === "list") out.push(JSON.stringify(await redis.lrange(key, 0, -1)));
      else if (type === "set") out.push(JSON.stringify(await redis.smembers(key)));
      else if (type === "zset") out.push(JSON.stringify(await redis.zrange(key, "0", "-1")));
      else if (type === "stream") out.push(JSON.stringify(await redis.xrange(key, "-", "+")));
    }
  } while (cursor !== "0");
  return out.join("\n");
}

beforeAll(async () => {
  fake = await startFakeLlm();
  workspace = await mkdtemp(join(tmpdir(), "pf-litellm-"));
  prefix = uniquePrefix("litellm");
  // What a process environment would hold; the entry points call loadEnv, then takeSecrets.
  const source: NodeJS.ProcessEnv = {
    REDIS_URL: inject("redisUrl"),
    PORT: "0",
    WORKSPACE_DIR: workspace,
    PI_FLEET_KEY_PREFIX: prefix,
    LOG_LEVEL: "warn",
    LITELLM_BASE_URL: fake.baseUrl,
    LITELLM_MODELS: "team-fast, team-smart",
    LITELLM_DEFAULT_MODEL: "team-smart",
    LITELLM_API_KEY: KEY,
  };
  const env = loadEnv(source);
  const secrets = takeSecrets(source);
  expect(source.LITELLM_API_KEY).toBeUndefined();
  const logger = createLogger("test", "warn");
  worker = await startWorker({ ...env, PI_FLEET_WORKER_ID: "w1" }, logger, secrets);
  // The gateway's env still holds the key in memory (as in a real process): it must never leak.
  gateway = await startGateway(env, logger);
  redis = await connectRedis(inject("redisUrl"), "command", "test-litellm");
  expect((await call("POST", "/v1/projects", { name: PROJECT })).status).toBe(200);
});

afterAll(async () => {
  await redis?.quit();
  await gateway?.close();
  await worker?.close(0);
  await fake?.close();
  if (workspace) await rm(workspace, { recursive: true, force: true });
});

describe("LiteLLM preset", () => {
  it("lists the preset's models as available, the default model first", async () => {
    for (const path of ["/v1/models", "/v1/sessions/models"]) {
      const rows = await models(path);
      const lite = rows.filter((m) => m.provider === "litellm");
      expect(lite.map((m) => m.id)).toEqual(["team-smart", "team-fast"]);
      for (const m of lite) {
        expect(m).toMatchObject({
          available: true,
          reasoning: false,
          contextWindow: 128_000,
          maxTokens: 16_384,
        });
      }
      // No org provider here, so the preset comes first: it is the org's default model.
      expect(rows[0]).toMatchObject({ provider: "litellm", id: "team-smart" });
    }
    // It is an operator preset, not one of the org's own custom providers.
    const own = (await call("GET", "/v1/custom/providers")).json as { providers: unknown[] };
    expect(own.providers).toEqual([]);
  });

  it("runs a session without a model on litellm/<LITELLM_DEFAULT_MODEL> with the operator's key", async () => {
    const session = await newSession();
    const settings = await call("GET", `/v1/projects/${PROJECT}/sessions/${session}/settings`);
    expect(settings.json).toMatchObject({ model: { provider: "litellm", id: "team-smart" } });

    fake.reset();
    await runPrompt(session, "[[reply:hello from litellm]]");
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]!.body.model).toBe("team-smart");
    expect(fake.requests[0]!.authorization).toBe(`Bearer ${KEY}`);
    const history = await call("GET", `/v1/projects/${PROJECT}/sessions/${session}`);
    expect(JSON.stringify(history.json)).toContain("hello from litellm");

    // The pi session itself offers the preset's models.
    const available = await call("POST", `/v1/projects/${PROJECT}/sessions/${session}/commands`, {
      type: "get_available_models",
    });
    const ids = (available.json as { data: { models: { provider: string; id: string }[] } }).data.models
      .filter((m) => m.provider === "litellm")
      .map((m) => m.id);
    expect(ids.sort()).toEqual(["team-fast", "team-smart"]);
  });

  it("accepts another preset model chosen explicitly", async () => {
    const session = await newSession({ provider: "litellm", modelId: "team-fast" });
    fake.reset();
    await runPrompt(session, "[[reply:fast]]");
    expect(fake.requests[0]!.body.model).toBe("team-fast");
    expect(fake.requests[0]!.authorization).toBe(`Bearer ${KEY}`);
  });

  it("keeps the key out of the agent's bash", async () => {
    expect(process.env.LITELLM_API_KEY).toBeUndefined();
    const session = await newSession();
    fake.reset();
    await runPrompt(session, '[[bash:env; echo "KEY=($LITELLM_API_KEY)"]]');
    // The tool's output went back to the "model" in the second request.
    const toolMessage = JSON.stringify(fake.requests.at(-1)!.body.messages);
    expect(toolMessage).toContain("PATH=");
    expect(toolMessage).toContain("KEY=()");
    expect(toolMessage).not.toContain(KEY);
  });

  it("never returns the key from the API or stores it in Redis", async () => {
    const session = await newSession();
    const runId = await runPrompt(session, "[[reply:secret check]]");
    const paths = [
      "/v1/models",
      "/v1/sessions/models",
      "/v1/custom/providers",
      "/v1/auth/providers",
      "/openapi.json",
      `/v1/projects/${PROJECT}`,
      `/v1/projects/${PROJECT}/sessions`,
      `/v1/projects/${PROJECT}/sessions/${session}`,
      `/v1/projects/${PROJECT}/sessions/${session}/settings`,
      `/v1/projects/${PROJECT}/sessions/${session}/state`,
      `/v1/projects/${PROJECT}/sessions/${session}/runs/${runId}`,
    ];
    for (const path of paths) {
      const res = await fetch(`${gateway.url}${path}`);
      expect(res.status, path).toBe(200);
      expect(await res.text(), path).not.toContain(KEY);
    }
    const sse = await openSse(`${gateway.url}/v1/projects/${PROJECT}/sessions/${session}/events?after=0`);
    await sse.waitFor((e) => (e.json as { type?: string }).type === "run_finished", 5000);
    sse.close();
    expect(JSON.stringify(sse.events)).not.toContain(KEY);
    const state = await call("POST", `/v1/projects/${PROJECT}/sessions/${session}/commands`, {
      type: "get_state",
    });
    expect(JSON.stringify(state.json)).not.toContain(KEY);
    const stored = await dumpRedis();
    expect(stored).toContain("team-smart"); // the preset is published (without its key)
    expect(stored).not.toContain(KEY);
  });

  it("lets an org's own `litellm` provider replace the preset, and restores it on delete", async () => {
    const put = await call("PUT", "/v1/custom/providers", {
      provider: "litellm",
      baseUrl: fake.baseUrl,
      api: "openai-completions",
      apiKey: ORG_KEY,
      models: [{ id: "org-model" }],
    });
    expect(put.status).toBe(200);
    expect((await models()).filter((m) => m.provider === "litellm").map((m) => m.id)).toEqual(["org-model"]);

    const session = await newSession();
    fake.reset();
    await runPrompt(session, "[[reply:own provider]]");
    expect(fake.requests[0]!.body.model).toBe("org-model");
    // The org's own key: the operator's key never goes to an org-chosen provider.
    expect(fake.requests[0]!.authorization).toBe(`Bearer ${ORG_KEY}`);

    expect((await call("DELETE", "/v1/custom/providers/litellm")).status).toBe(200);
    expect((await models()).filter((m) => m.provider === "litellm").map((m) => m.id)).toEqual([
      "team-smart",
      "team-fast",
    ]);
    const again = await newSession();
    fake.reset();
    await runPrompt(again, "[[reply:preset again]]");
    expect(fake.requests[0]!.body.model).toBe("team-smart");
    expect(fake.requests[0]!.authorization).toBe(`Bearer ${KEY}`);
  });
});
