// The project activity stream: one connection sees a whole project — sessions created and
// deleted, runs queued, started and ended — and resumes like a session stream.
import { openSse } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

let stack: InProcessStack;

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "activity");
  await stack.call("POST", "/v1/projects", { name: "dash" });
});

afterAll(async () => {
  await stack?.close();
});

interface Activity {
  type: string;
  sessionId?: string;
  runId?: string;
  status?: string;
}

describe("project activity stream", () => {
  it("reports sessions and runs of the whole project, in order, and resumes", async () => {
    const sse = await openSse(`${stack.gateway.url}/v1/projects/dash/events?after=0`);
    expect(sse.status).toBe(200);
    const a = ((await stack.call("POST", "/v1/projects/dash/sessions", {})).json as { id: string }).id;
    const b = (
      (await stack.call("POST", "/v1/projects/dash/sessions", { name: "second" })).json as { id: string }
    ).id;
    const runA = (
      (await stack.call("POST", `/v1/projects/dash/sessions/${a}/prompt`, { text: "[[reply:a]]" })).json as {
        runId: string;
      }
    ).runId;
    const runB = (
      (await stack.call("POST", `/v1/projects/dash/sessions/${b}/prompt`, { text: "[[reply:b]]" })).json as {
        runId: string;
      }
    ).runId;
    await sse.waitFor(
      (_e, all) => all.filter((x) => (x.json as Activity).type === "run_finished").length === 2,
      15_000,
    );
    expect((await stack.call("DELETE", `/v1/projects/dash/sessions/${b}`)).status).toBe(200);
    await sse
      .waitFor((e) => (e.json as Activity).type === "session_deleted", 5000)
      .catch((err) => {
        console.log(JSON.stringify(sse.events.map((e) => e.json)));
        throw err;
      });
    sse.close();

    const events = sse.events.map((e) => e.json as Activity);
    expect(events.filter((e) => e.type === "session_created").map((e) => e.sessionId)).toEqual([a, b]);
    for (const [session, run] of [
      [a, runA],
      [b, runB],
    ] as const) {
      const mine = events.filter((e) => e.runId === run).map((e) => e.type);
      expect(mine).toEqual(["run_queued", "run_started", "run_finished"]);
      expect(events.filter((e) => e.runId === run).every((e) => e.sessionId === session)).toBe(true);
    }
    expect(events.at(-1)).toEqual({ type: "session_deleted", sessionId: b });
    // No session payloads leak into the activity stream: only compact records.
    expect(events.some((e) => e.type.startsWith("message_"))).toBe(false);

    // Resume from the third entry: exactly the rest, same ids.
    const ids = sse.events.map((e) => e.id);
    const resumed = await openSse(`${stack.gateway.url}/v1/projects/dash/events`, { lastEventId: ids[2] });
    await resumed.waitFor((_e, all) => all.length >= ids.length - 3, 5000);
    resumed.close();
    expect(resumed.events.map((e) => e.id)).toEqual(ids.slice(3));
  });

  it("answers 404 for an unknown project", async () => {
    const res = await fetch(`${stack.gateway.url}/v1/projects/nope/events`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { code: string }).code).toBe("PF_ERR_PROJECT_NOT_FOUND");
  });
});
