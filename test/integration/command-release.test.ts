// A command that reaches a project while its owner lets it go (idle release, drain) is answered by
// the next owner, and the releasing owner opens no pi session it would never dispose. The
// command's session lookup in the worker is held back until the release has begun (the product
// code runs unchanged around it); every pi session the worker opens is counted, with its dispose.
import { DEFAULT_ORG } from "@pi-fleet/contracts";
import { waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ProjectReleasingError, SessionHost } from "../../apps/worker/src/session-host.ts";
import type { WorkerContext } from "../../apps/worker/src/worker-context.ts";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";
import { countPiSessions } from "./helpers/pi-session-count.ts";

type Json = Record<string, unknown>;
let stack: InProcessStack;

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "command-release");
});

afterAll(async () => {
  await stack?.close();
});

describe("a command during a release", () => {
  it("is answered by the next owner; the releasing one leaves no session open", async () => {
    const sessions = countPiSessions();
    const worker = stack.workers[0];
    if (!worker) throw new Error("no worker");
    const registry = (worker.ownership as unknown as { ctx: WorkerContext }).ctx.registry;
    const getSession = registry.getSession.bind(registry);
    try {
      await stack.call("POST", "/v1/projects", { name: "cmd-rel" });
      const sid = ((await stack.call("POST", "/v1/projects/cmd-rel/sessions")).json as Json).id as string;
      const base = `/v1/projects/cmd-rel/sessions/${sid}`;
      const run = (await stack.call("POST", `${base}/prompt`, { text: "[[reply:hi]]" })).json as Json;
      await waitFor(
        async () =>
          ((await stack.call("GET", `${base}/runs/${run.runId}`)).json as Json).status === "finished",
        { timeoutMs: 15_000 },
      );
      expect(sessions.opened).toBe(1);

      // The worker's next session lookup waits until the release has begun.
      let entered = 0;
      let proceed!: () => void;
      const gate = new Promise<void>((resolve) => {
        proceed = resolve;
      });
      registry.getSession = async (...args: Parameters<typeof getSession>) => {
        if (entered++ === 0) await gate;
        return getSession(...args);
      };
      const command = stack.call("POST", `${base}/commands`, { type: "get_state" });
      await waitFor(() => entered > 0, { message: "the command reached the worker" });
      expect(worker.ownership.release(DEFAULT_ORG, "cmd-rel")).toBe(true);
      await waitFor(() => sessions.disposed === 1, { message: "the releasing owner disposed its session" });
      proceed();
      const res = await command;
      expect(res.status).toBe(200);
      expect(res.json).toMatchObject({ type: "get_state", success: true });

      // Release the next ownership too: every session ever opened is disposed with its owner.
      await waitFor(() => worker.ownership.runner(DEFAULT_ORG, "cmd-rel") !== undefined);
      expect(worker.ownership.release(DEFAULT_ORG, "cmd-rel")).toBe(true);
      await waitFor(() => worker.ownership.runner(DEFAULT_ORG, "cmd-rel") === undefined);
      await waitFor(() => sessions.opened === sessions.disposed, {
        message: `opened ${sessions.opened}, disposed ${sessions.disposed}`,
      });
    } finally {
      sessions.restore();
      registry.getSession = getSession;
    }
  });

  it("a run that starts while its owner disposes the sessions ends interrupted (released), not failed", async () => {
    // SessionHost refuses to open a session once its project is being released; a run that got
    // its start recorded just then did not run.
    const acquire = SessionHost.prototype.acquire;
    let refused = 0;
    SessionHost.prototype.acquire = async function (this: SessionHost, ...args) {
      if (refused++ === 0) throw new ProjectReleasingError();
      return acquire.apply(this, args);
    };
    try {
      await stack.call("POST", "/v1/projects", { name: "run-release" });
      const sid = ((await stack.call("POST", "/v1/projects/run-release/sessions")).json as Json).id as string;
      const base = `/v1/projects/run-release/sessions/${sid}`;
      const run = (await stack.call("POST", `${base}/prompt`, { text: "[[reply:never]]" })).json as Json;
      const ended = await waitFor(
        async () => {
          const r = (await stack.call("GET", `${base}/runs/${run.runId}`)).json as Json;
          return ["queued", "running"].includes(r.status as string) ? undefined : r;
        },
        { timeoutMs: 15_000 },
      );
      expect(ended).toMatchObject({ status: "interrupted", reason: "released" });
    } finally {
      SessionHost.prototype.acquire = acquire;
    }
  });
});
