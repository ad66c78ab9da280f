// An in-process gateway and worker(s) on the test's Redis with the scripted fake LLM registered
// as the org's provider. For integration tests; e2e tests use real child processes instead.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadEnv } from "@pi-fleet/config";
import { type Gateway, startGateway } from "@pi-fleet/gateway";
import { createLogger, type Logger } from "@pi-fleet/observability";
import { type FakeLlm, startFakeLlm, uniquePrefix } from "@pi-fleet/testkit";
import { startWorker, type WorkerNode } from "@pi-fleet/worker";

/** A running in-process stack. */
export interface InProcessStack {
  gateway: Gateway;
  workers: WorkerNode[];
  fake: FakeLlm;
  workspace: string;
  /** The Redis key prefix of this stack. */
  prefix: string;
  /** The environment the gateway and workers were started with (to start more of them). */
  env: Record<string, string>;
  /** A JSON request; `token` goes into `Authorization: Bearer` (keyed mode). */
  call(
    method: string,
    path: string,
    body?: unknown,
    token?: string,
  ): Promise<{ status: number; json: unknown }>;
  /** Registers the fake LLM as custom provider `fake` (model `fake-model`) for the token's org. */
  registerFake(token?: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts `workerCount` workers and one gateway with their own key prefix and workspace. In open
 * mode the fake provider is registered for `default`; with `PI_FLEET_ADMIN_TOKEN` in `env` (keyed
 * mode) the test registers it per org with `registerFake(token)`.
 */
export async function startInProcessStack(
  redisUrl: string,
  label: string,
  opts: { workerCount?: number; env?: Record<string, string>; logger?: Logger } = {},
): Promise<InProcessStack> {
  const fake = await startFakeLlm();
  const workspace = await mkdtemp(join(tmpdir(), `pf-${label}-`));
  const base: Record<string, string> = {
    REDIS_URL: redisUrl,
    PORT: "0",
    WORKSPACE_DIR: workspace,
    PI_FLEET_KEY_PREFIX: uniquePrefix(label),
    LOG_LEVEL: "warn",
    ...opts.env,
  };
  const logger = opts.logger ?? createLogger("test", "warn");
  const workers: WorkerNode[] = [];
  for (let i = 0; i < (opts.workerCount ?? 1); i++) {
    workers.push(await startWorker(loadEnv({ ...base, PI_FLEET_WORKER_ID: `w${i + 1}` }), logger, {}));
  }
  const gateway = await startGateway(loadEnv(base), logger);
  const call = async (method: string, path: string, body?: unknown, token?: string) => {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`${gateway.url}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as unknown };
  };
  const registerFake = async (token?: string) => {
    const put = await call(
      "PUT",
      "/v1/custom/providers",
      {
        provider: "fake",
        baseUrl: fake.baseUrl,
        api: "openai-completions",
        apiKey: "sk-fake",
        models: [{ id: "fake-model" }],
      },
      token,
    );
    if (put.status !== 200) throw new Error(`provider registration failed: ${JSON.stringify(put.json)}`);
  };
  if (base.PI_FLEET_ADMIN_TOKEN === undefined) await registerFake();
  return {
    gateway,
    workers,
    fake,
    workspace,
    prefix: base.PI_FLEET_KEY_PREFIX as string,
    env: base,
    call,
    registerFake,
    async close() {
      await gateway.close();
      await Promise.all(workers.map((w) => w.close(0)));
      await fake.close();
      await rm(workspace, { recursive: true, force: true });
    },
  };
}
