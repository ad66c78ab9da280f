// Per-project and per-org caps on a real gateway, two workers and Redis (issue 6 "Limits"):
// queued-run caps answer 429 with Retry-After and write nothing; a lost index entry cannot lock an
// org out; an org at its concurrent-run quota waits in its own queue while another org's run starts.

import { waitFor } from "@pi-fleet/testkit";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const ADMIN = "caps-operator-token-0123456789abcdef";
let stack: InProcessStack;
let redis: Redis;
const key: Record<"a" | "b", string> = { a: "", b: "" };

type Json = Record<string, unknown>;

async function session(token: string, project: string): Promise<string> {
  await stack.call("POST", "/v1/projects", { name: project }, token);
  return ((await stack.call("POST", `/v1/projects/${project}/sessions`, undefined, token)).json as Json)
    .id as string;
}

async function prompt(token: string, project: string, sid: string, text: string) {
  const res = await fetch(`${stack.gateway.url}/v1/projects/${project}/sessions/${sid}/prompt`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ text }),
  });
  return { status: res.status, retryAfter: res.headers.get("retry-after"), json: (await res.json()) as Json };
}

async function run(token: string, project: string, sid: string, runId: string): Promise<Json> {
  return (await stack.call("GET", `/v1/projects/${project}/sessions/${sid}/runs/${runId}`, undefined, token))
    .json as Json;
}

async function ended(token: string, project: string, sid: string, runId: string): Promise<void> {
  await waitFor(
    async () => ["finished", "failed"].includes((await run(token, project, sid, runId)).status as string),
    {
      timeoutMs: 20_000,
    },
  );
}

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "caps", {
    workerCount: 2,
    env: {
      PI_FLEET_ADMIN_TOKEN: ADMIN,
      PI_FLEET_SECRET_KEY: "d".repeat(64),
      PI_FLEET_PROJECT_MAX_QUEUED: "3",
      PI_FLEET_ORG_MAX_QUEUED: "5",
      PI_FLEET_ORG_MAX_RUNS: "1",
      // Two project slots per worker: an org at its quota must not keep them from other orgs.
      PI_FLEET_MAX_PROJECTS: "2",
      PI_FLEET_IDLE_RELEASE_MS: "300",
    },
  });
  redis = new Redis(inject("redisUrl"));
  for (const org of ["a", "b"] as const) {
    await stack.call("POST", "/v1/admin/orgs", { id: `org-${org}` }, ADMIN);
    key[org] = (
      (await stack.call("POST", `/v1/admin/orgs/org-${org}/keys`, { role: "member" }, ADMIN)).json as Json
    ).key as string;
    const admin = (
      (await stack.call("POST", `/v1/admin/orgs/org-${org}/keys`, { role: "admin" }, ADMIN)).json as Json
    ).key as string;
    await stack.registerFake(admin);
  }
});

afterAll(async () => {
  await stack?.close();
  await redis?.quit();
});

describe("caps", () => {
  it("caps a project's open runs: 429 with Retry-After, nothing queued, accepted again later", async () => {
    const sid = await session(key.a, "capped");
    const first = await prompt(key.a, "capped", sid, "[[delay:400]][[reply:one]]");
    await prompt(key.a, "capped", sid, "[[reply:two]]");
    const third = await prompt(key.a, "capped", sid, "[[reply:three]]");
    expect([first.status, third.status]).toEqual([200, 200]);
    const refused = await prompt(key.a, "capped", sid, "[[reply:four]]");
    expect(refused.status).toBe(429);
    expect(refused.json.code).toBe("PF_ERR_QUEUE_FULL");
    expect(Number(refused.retryAfter)).toBeGreaterThan(0);
    const state = (await stack.call("GET", `/v1/projects/capped/sessions/${sid}/state`, undefined, key.a))
      .json as Json;
    expect(state.queueLength).toBeLessThanOrEqual(2);
    await ended(key.a, "capped", sid, third.json.runId as string);
    const again = await prompt(key.a, "capped", sid, "[[reply:five]]");
    expect(again.status).toBe(200);
    await ended(key.a, "capped", sid, again.json.runId as string);
  });

  it("caps an org's open runs across projects and repairs a lost index entry", async () => {
    // Five stale entries (their removal "was lost"): the org looks full, the repair proves it is not.
    for (let i = 0; i < 5; i++)
      await redis.zadd(`${stack.prefix}:org-queued:org-a`, "1", `capped/lost-run-${i}`);
    const sid = await session(key.a, "org-cap-1");
    const ok = await prompt(key.a, "org-cap-1", sid, "[[delay:400]][[reply:x]]");
    expect(ok.status).toBe(200);
    expect(await redis.zcard(`${stack.prefix}:org-queued:org-a`)).toBe(1);
    const sid2 = await session(key.a, "org-cap-2");
    const statuses: number[] = [ok.status];
    const accepted: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await prompt(key.a, "org-cap-2", sid2, "[[reply:y]]");
      statuses.push(res.status);
      if (res.status === 200) accepted.push(res.json.runId as string);
    }
    // At most 3 per project (org-cap-2), at most 5 for the org: the 6th prompt is refused.
    expect(statuses.filter((s) => s === 200).length).toBe(4);
    expect(statuses.at(-1)).toBe(429);
    // Another org is not affected.
    const b = await session(key.b, "other-org");
    expect((await prompt(key.b, "other-org", b, "[[reply:b]]")).status).toBe(200);
    await ended(key.a, "org-cap-1", sid, ok.json.runId as string);
    for (const runId of accepted) await ended(key.a, "org-cap-2", sid2, runId);
  });

  it("runs at most PI_FLEET_ORG_MAX_RUNS runs of an org at once, while another org proceeds", async () => {
    const s1 = await session(key.a, "quota-1");
    const s2 = await session(key.a, "quota-2");
    const sb = await session(key.b, "quota-b");
    const r1 = await prompt(key.a, "quota-1", s1, "[[delay:400]][[reply:a1]]");
    await waitFor(
      async () => (await run(key.a, "quota-1", s1, r1.json.runId as string)).status === "running",
      {
        timeoutMs: 10_000,
      },
    );
    const r2 = await prompt(key.a, "quota-2", s2, "[[reply:a2]]");
    const rb = await prompt(key.b, "quota-b", sb, "[[reply:b1]]");
    // org-b's run starts and ends while org-a's second run waits for the first.
    await ended(key.b, "quota-b", sb, rb.json.runId as string);
    const a2 = await run(key.a, "quota-2", s2, r2.json.runId as string);
    expect(a2.status).toBe("queued");
    await ended(key.a, "quota-1", s1, r1.json.runId as string);
    await ended(key.a, "quota-2", s2, r2.json.runId as string);
    const first = await run(key.a, "quota-1", s1, r1.json.runId as string);
    const second = await run(key.a, "quota-2", s2, r2.json.runId as string);
    expect(Date.parse(second.startedAt as string)).toBeGreaterThanOrEqual(
      Date.parse(first.endedAt as string),
    );
  });

  it("hands an org's projects back while it is at its quota, so another org's project gets an owner", async () => {
    // org-a floods five projects (one run of ~2.4 s each, quota 1; its open-run cap is 5): ~12 s of
    // work for four project slots. Without yielding, org-b's project would wait for two of them.
    const flood: { project: string; sid: string; runId: string }[] = [];
    for (let i = 0; i < 5; i++) {
      const project = `flood-${i}`;
      const sid = await session(key.a, project);
      const res = await prompt(key.a, project, sid, "[[delay:400]][[reply:flood]]");
      expect(res.status, `flood prompt ${i}: ${JSON.stringify(res.json)}`).toBe(200);
      flood.push({ project, sid, runId: res.json.runId as string });
    }
    // The flood holds the quota (its first run is running) before org-b asks.
    await waitFor(
      async () => {
        const states = await Promise.all(flood.map((f) => run(key.a, f.project, f.sid, f.runId)));
        return states.some((r) => r.status === "running");
      },
      { timeoutMs: 10_000 },
    );
    const sb = await session(key.b, "late-b");
    const rb = await prompt(key.b, "late-b", sb, "[[reply:b]]");
    const t0 = Date.now();
    await ended(key.b, "late-b", sb, rb.json.runId as string);
    const waited = Date.now() - t0;
    // org-b did not wait for org-a's backlog.
    const stillOpen = await Promise.all(flood.map((f) => run(key.a, f.project, f.sid, f.runId)));
    expect(stillOpen.filter((r) => r.status !== "finished").length).toBeGreaterThan(0);
    expect(waited).toBeLessThan(3500);
    for (const f of flood) await ended(key.a, f.project, f.sid, f.runId);
  });
});
