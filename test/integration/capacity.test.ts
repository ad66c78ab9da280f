// Worker capacity and project release: PI_FLEET_MAX_RUNS caps concurrent runs on a worker
// across projects, and an owner releases an idle project (lease gone, no runner) after
// PI_FLEET_IDLE_RELEASE_MS (runs and commands count as activity), then takes it again on the
// next prompt.
import { waitFor } from "@pi-fleet/testkit";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

let stack: InProcessStack;

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "capacity", {
    env: { PI_FLEET_MAX_RUNS: "1", PI_FLEET_IDLE_RELEASE_MS: "400" },
  });
});

afterAll(async () => {
  await stack?.close();
});

interface Run {
  status: string;
  startedAt: string;
  endedAt: string;
}

async function prompt(project: string, session: string, text: string): Promise<string> {
  const res = await stack.call("POST", `/v1/projects/${project}/sessions/${session}/prompt`, { text });
  return (res.json as { runId: string }).runId;
}

async function finished(project: string, session: string, runId: string): Promise<Run> {
  return waitFor(
    async () => {
      const run = (await stack.call("GET", `/v1/projects/${project}/sessions/${session}/runs/${runId}`))
        .json as Run;
      return run.status === "finished" ? run : undefined;
    },
    { timeoutMs: 20_000 },
  );
}

describe("capacity", () => {
  it("never runs more than PI_FLEET_MAX_RUNS at once on a worker, across projects", async () => {
    const runs: { project: string; session: string; runId: string }[] = [];
    for (const name of ["cap-a", "cap-b"]) {
      await stack.call("POST", "/v1/projects", { name });
      for (let i = 0; i < 2; i++) {
        const session = (
          (await stack.call("POST", `/v1/projects/${name}/sessions`, {})).json as { id: string }
        ).id;
        runs.push({
          project: name,
          session,
          runId: await prompt(name, session, "[[delay:10]] [[deltas:10]]"),
        });
      }
    }
    const done = await Promise.all(runs.map((r) => finished(r.project, r.session, r.runId)));
    const intervals = done
      .map((r) => [Date.parse(r.startedAt), Date.parse(r.endedAt)] as const)
      .sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < intervals.length; i++)
      expect(intervals[i]![0]).toBeGreaterThanOrEqual(intervals[i - 1]![1]);
  });

  it("releases an idle project and takes it again on the next prompt", async () => {
    await stack.call("POST", "/v1/projects", { name: "idle" });
    const session = ((await stack.call("POST", "/v1/projects/idle/sessions", {})).json as { id: string }).id;
    await finished("idle", session, await prompt("idle", session, "[[reply:one]]"));
    const worker = stack.workers[0]!;
    const redis = new Redis(inject("redisUrl"));
    try {
      const leaseKey = `${stack.prefix}:lease:{default.idle}`;
      await waitFor(
        async () => worker.ownership.runner("default", "idle") === undefined && !(await redis.get(leaseKey)),
        {
          timeoutMs: 10_000,
        },
      );
      const epochBefore = Number(await redis.get(`${stack.prefix}:epoch:{default.idle}`));
      // An idle release leaves nothing behind: it is marked clean, so the next owner skips the reconcile.
      expect(await redis.get(`${stack.prefix}:lease-clean:{default.idle}`)).toBe(String(epochBefore));
      await finished("idle", session, await prompt("idle", session, "[[reply:two]]"));
      expect(Number(await redis.get(`${stack.prefix}:epoch:{default.idle}`))).toBe(epochBefore + 1);
      expect(worker.ownership.runner("default", "idle")?.lease.previousClean).toBe(true);
    } finally {
      redis.disconnect();
    }
  });

  it("counts commands as activity: a project polled with commands keeps its owner", async () => {
    await stack.call("POST", "/v1/projects", { name: "polled" });
    const session = ((await stack.call("POST", "/v1/projects/polled/sessions", {})).json as { id: string })
      .id;
    await finished("polled", session, await prompt("polled", session, "[[reply:one]]"));
    const worker = stack.workers[0]!;
    const epochOf = () => worker.ownership.runner("default", "polled")?.lease.epoch;
    const epoch = epochOf();
    expect(epoch).toBeDefined();
    // A UI polling get_state every 150 ms for three times PI_FLEET_IDLE_RELEASE_MS (400 ms): the
    // project used to be released every 400 ms and taken again by the next command.
    const until = Date.now() + 1200;
    while (Date.now() < until) {
      const res = await stack.call("POST", `/v1/projects/polled/sessions/${session}/commands`, {
        type: "get_state",
      });
      expect(res.status).toBe(200);
      expect(epochOf()).toBe(epoch);
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    // Once the polling stops, the project is released as idle.
    await waitFor(() => worker.ownership.runner("default", "polled") === undefined, { timeoutMs: 10_000 });
  });
});
