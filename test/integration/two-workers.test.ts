// One gateway and two workers in-process against a real Redis and the scripted fake LLM: every
// project has one owner at a time, runs of one session never overlap and start in order, runs of
// different sessions may overlap, and every run ends in exactly one terminal event.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadEnv } from "@pi-fleet/config";
import { type Gateway, startGateway } from "@pi-fleet/gateway";
import { createLogger } from "@pi-fleet/observability";
import { type FakeLlm, openSse, startFakeLlm, uniquePrefix, waitFor } from "@pi-fleet/testkit";
import { startWorker, type WorkerNode } from "@pi-fleet/worker";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

let fake: FakeLlm;
let gateway: Gateway;
let workers: WorkerNode[] = [];
let workspace: string;

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
  return { status: res.status, json: await res.json() };
}

beforeAll(async () => {
  fake = await startFakeLlm();
  workspace = await mkdtemp(join(tmpdir(), "pf-two-workers-"));
  const base = {
    REDIS_URL: inject("redisUrl"),
    PORT: "0",
    WORKSPACE_DIR: workspace,
    PI_FLEET_KEY_PREFIX: uniquePrefix("two-workers"),
    LOG_LEVEL: "warn",
  };
  const logger = createLogger("test", "warn");
  workers = [
    await startWorker(loadEnv({ ...base, PI_FLEET_WORKER_ID: "w1" }), logger, {}),
    await startWorker(loadEnv({ ...base, PI_FLEET_WORKER_ID: "w2" }), logger, {}),
  ];
  gateway = await startGateway(loadEnv(base), logger);
  const put = await call("PUT", "/v1/custom/providers", {
    provider: "fake",
    baseUrl: fake.baseUrl,
    api: "openai-completions",
    apiKey: "sk-fake",
    models: [{ id: "fake-model" }],
  });
  expect(put.status).toBe(200);
});

afterAll(async () => {
  await gateway?.close();
  await Promise.all(workers.map((w) => w.close()));
  await fake?.close();
  await rm(workspace, { recursive: true, force: true });
});

interface RunView {
  id: string;
  status: string;
  startedAt: string;
  endedAt: string;
}

describe("two workers", () => {
  it("serializes runs per session, overlaps sessions, one owner per project", async () => {
    const projects = ["alpha", "beta", "gamma"];
    const sessions: { project: string; id: string }[] = [];
    for (const name of projects) {
      expect((await call("POST", "/v1/projects", { name })).status).toBe(200);
      for (let k = 0; k < 2; k++) {
        const created = await call("POST", `/v1/projects/${name}/sessions`, {});
        sessions.push({ project: name, id: (created.json as { id: string }).id });
      }
    }
    // Three prompts per session, all sent at once.
    const prompts = await Promise.all(
      sessions.flatMap((s) =>
        [0, 1, 2].map(async (i) => {
          const res = await call("POST", `/v1/projects/${s.project}/sessions/${s.id}/prompt`, {
            text: `[[delay:5]] [[deltas:8]] [[tag:${s.id}-${i}]]`,
          });
          expect(res.status).toBe(200);
          return { ...s, i, runId: (res.json as { runId: string }).runId };
        }),
      ),
    );
    const runs = await waitFor(
      async () => {
        const views = await Promise.all(
          prompts.map(async (p) => {
            const r = await call("GET", `/v1/projects/${p.project}/sessions/${p.id}/runs/${p.runId}`);
            return { ...p, run: r.json as RunView };
          }),
        );
        return views.every((v) => v.run.status === "finished") ? views : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    for (const s of sessions) {
      const mine = runs
        .filter((r) => r.id === s.id)
        .map((r) => ({
          seqStart: Date.parse(r.run.startedAt),
          end: Date.parse(r.run.endedAt),
          runId: r.runId,
        }))
        .sort((a, b) => a.seqStart - b.seqStart);
      for (let k = 1; k < mine.length; k++)
        expect(mine[k]!.seqStart).toBeGreaterThanOrEqual(mine[k - 1]!.end);
      // Stream order: each run's events are bracketed, one terminal event per run, never interleaved.
      const sse = await openSse(`${gateway.url}/v1/projects/${s.project}/sessions/${s.id}/events?after=0`);
      await sse.waitFor(
        (_e, all) => all.filter((x) => x.data.includes('"run_finished"')).length >= 3,
        10_000,
      );
      sse.close();
      const fleet = sse.events
        .map((e) => e.json as { type: string; runId?: string })
        .filter((e) => e.type.startsWith("run_"));
      const order = fleet.filter((e) => e.type !== "run_queued").map((e) => `${e.type}:${e.runId}`);
      const starts = order.filter((x) => x.startsWith("run_started"));
      expect(starts).toHaveLength(3);
      for (let k = 0; k < order.length; k += 2) {
        expect(order[k]?.startsWith("run_started")).toBe(true);
        expect(order[k + 1]).toBe(order[k]?.replace("run_started", "run_finished"));
      }
    }
    // Sessions of one project ran concurrently at least once.
    const overlaps = projects.some((p) => {
      const [a, b] = sessions.filter((s) => s.project === p).map((s) => runs.filter((r) => r.id === s.id));
      return a!.some((x) =>
        b!.some(
          (y) =>
            Date.parse(x.run.startedAt) < Date.parse(y.run.endedAt) &&
            Date.parse(y.run.startedAt) < Date.parse(x.run.endedAt),
        ),
      );
    });
    expect(overlaps).toBe(true);
    // Each project is owned by exactly one of the two workers.
    const owners = projects.map(
      (p) => workers.filter((w) => w.ownership.runner("default", p) !== undefined).length,
    );
    expect(owners).toEqual([1, 1, 1]);
  });
});
