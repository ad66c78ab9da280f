// An owned project that is never idle does not keep every pi session it ever ran: a session no run
// or command used for PI_FLEET_SESSION_IDLE_MS is disposed while the project stays owned, and its
// next use reopens it from its transcript with its history. Every pi session the worker opens is
// counted, with its dispose.
import { DEFAULT_ORG } from "@pi-fleet/contracts";
import { waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";
import { countPiSessions } from "./helpers/pi-session-count.ts";

type Json = Record<string, unknown>;
let stack: InProcessStack;

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "session-eviction", {
    env: { PI_FLEET_SESSION_IDLE_MS: "400", PI_FLEET_IDLE_RELEASE_MS: "3600000" },
  });
});

afterAll(async () => {
  await stack?.close();
});

async function runPrompt(base: string, text: string): Promise<void> {
  const runId = ((await stack.call("POST", `${base}/prompt`, { text })).json as Json).runId;
  await waitFor(
    async () => ((await stack.call("GET", `${base}/runs/${runId}`)).json as Json).status === "finished",
    { timeoutMs: 15_000 },
  );
}

describe("idle sessions of an owned project", () => {
  it("are disposed after PI_FLEET_SESSION_IDLE_MS and reopened with their history", async () => {
    const sessions = countPiSessions();
    try {
      await stack.call("POST", "/v1/projects", { name: "evict" });
      const bases: string[] = [];
      for (let i = 0; i < 3; i++) {
        const sid = ((await stack.call("POST", "/v1/projects/evict/sessions")).json as Json).id as string;
        bases.push(`/v1/projects/evict/sessions/${sid}`);
      }
      for (const [i, base] of bases.entries()) await runPrompt(base, `[[reply:answer ${i}]]`);
      expect(sessions.opened).toBe(3);
      const worker = stack.workers[0];
      if (!worker) throw new Error("no worker");
      const epoch = worker.ownership.runner(DEFAULT_ORG, "evict")?.lease.epoch;

      await waitFor(() => sessions.disposed === 3, {
        timeoutMs: 5000,
        message: `disposed ${sessions.disposed} of 3`,
      });
      // The project itself stayed with its owner.
      expect(worker.ownership.runner(DEFAULT_ORG, "evict")?.lease.epoch).toBe(epoch);

      // The next use reopens the session from its transcript, history included.
      const [first] = bases;
      const res = await stack.call("POST", `${first}/commands`, { type: "get_messages" });
      expect(sessions.opened).toBe(4);
      const text = JSON.stringify((res.json as Json).data);
      expect(text).toContain("answer 0");
      await runPrompt(first as string, "[[reply:again]]");
      const after = await stack.call("POST", `${first}/commands`, { type: "get_messages" });
      expect(JSON.stringify((after.json as Json).data)).toMatch(/answer 0[\s\S]*again/);
    } finally {
      sessions.restore();
    }
  });
});
