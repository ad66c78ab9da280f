// An in-process gateway and worker(s) on the test's Redis with the scripted fake LLM registered
// as the org's provider. For integration tests; e2e tests use real child processes instead.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadEnv } from "@pi-fleet/config";
import { type Gateway, startGateway } from "@pi-fleet/gateway";
import { createLogger } from "@pi-fleet/observability";
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
  call(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }>;
  close(): Promise<void>;
}

/** Starts `workerCount` workers and one gateway with their own key prefix and workspace. */
export async function startInProcessStack(
  redisUrl: string,
  label: string,
  opts: { workerCount?: number; env?: Record<string, string> } = {},
): Promise<InProcessStack> {
  const fake = await startFakeLlm();
  const workspace = await mkdtemp(join(tmpdir(), `pf-${label}-`));
  const base = {
    REDIS_URL: redisUrl,
    PORT: "0",
    WORKSPACE_DIR: workspace,
    PI_FLEET_KEY_PREFIX: uniquePrefix(label),
    LOG_LEVEL: "warn",
    ...opts.env,
  };
  const logger = createLogger("test", "warn");
  const workers: WorkerNode[] = [];
  for (let i = 0; i < (opts.workerCount ?? 1); i++) {
    workers.push(await startWorker(loadEnv({ ...base, PI_FLEET_WORKER_ID: `w${i + 1}` }), logger, {}));
  }
  const gateway = await startGateway(loadEnv(base), logger);
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${gateway.url}${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as unknown };
  };
  const put = await call("PUT", "/v1/custom/providers", {
    provider: "fake",
    baseUrl: fake.baseUrl,
    api: "openai-completions",
    apiKey: "sk-fake",
    models: [{ id: "fake-model" }],
  });
  if (put.status !== 200) throw new Error(`provider registration failed: ${JSON.stringify(put.json)}`);
  return {
    gateway,
    workers,
    fake,
    workspace,
    prefix: base.PI_FLEET_KEY_PREFIX,
    call,
    async close() {
      await gateway.close();
      await Promise.all(workers.map((w) => w.close(0)));
      await fake.close();
      await rm(workspace, { recursive: true, force: true });
    },
  };
}
