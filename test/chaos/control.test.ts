// Control from the gateway that did not take the prompt: a prompt goes in through gateway A,
// then gateway B steers the running run (delivered into it), answers get_state, and aborts it
// (the run ends `run_aborted`). Then the control round trip of ~50 get_state commands through B.

import { randomBytes } from "node:crypto";
import { type FakeLlm, lastUserText, openSse, type SseConnection, startFakeLlm } from "@pi-fleet/testkit";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  call,
  createProject,
  createSession,
  eventsUrl,
  prompt,
  registerFake,
  sessionPath,
  waitRunEnd,
} from "./support/api.ts";
import { percentile, poll, printFigures, terminalsOf } from "./support/checks.ts";
import { type Cluster, startCluster } from "./support/cluster.ts";
import { replaySession } from "./support/follower.ts";
import { stopAllProcs } from "./support/procs.ts";

let fake: FakeLlm;
let c: Cluster;
const sockets: SseConnection[] = [];

beforeAll(async () => {
  fake = await startFakeLlm();
  c = await startCluster({ label: "control" });
  await registerFake(c.gw(0).url, fake);
});

afterEach(async (ctx) => {
  for (const s of sockets.splice(0)) s.close();
  if (ctx.task.result?.state === "fail") console.log(await c.failureReport());
});

afterAll(async () => {
  await c?.close();
  await stopAllProcs(); // anything a failed start left behind
  await fake?.close();
});

interface CommandAnswer {
  type: string;
  success: boolean;
  data?: { isStreaming?: boolean; sessionId?: string; messageCount?: number };
  error?: string;
}

describe("cross-gateway control", () => {
  it("steer, get_state and abort through the other gateway; get_state round trip", async () => {
    const [gA, gB] = [c.gw(0).url, c.gw(1).url];
    const project = await createProject(gA, "control");
    const session = await createSession(gA, project);
    const path = sessionPath(project, session);
    const run = await prompt(gA, project, session, "[[delay:20]] [[deltas:60]] [[tag:ctl-first]]");
    const sse = await openSse(eventsUrl(gB, project, session, run.offset));
    sockets.push(sse);
    await sse.waitFor((e) => e.data.includes('"type":"message_update"'), 20_000);

    // Steer through B: delivered into the running run.
    const steerToken = `steer-${randomBytes(4).toString("hex")}`;
    const steer = await call<{ delivered: string; runId?: string }>(gB, "POST", `${path}/steer`, {
      text: `[[delay:20]] [[deltas:500]] ${steerToken}`,
    });
    expect(steer.status, steer.text).toBe(200);
    expect(steer.json).toMatchObject({ delivered: "steer", runId: run.runId });
    // The model gets the steering message as its next user turn (same run).
    await poll(
      "the steered model request",
      async () => (fake.requests.some((r) => lastUserText(r.body).includes(steerToken)) ? true : undefined),
      15_000,
    );

    // get_state through B while the run streams.
    const busy = await call<CommandAnswer>(gB, "POST", `${path}/commands`, { type: "get_state" });
    expect(busy.status, busy.text).toBe(200);
    expect(busy.json).toMatchObject({ type: "get_state", success: true, data: { isStreaming: true } });

    // Abort through B.
    const abort = await call<{ aborted: boolean; runId?: string }>(gB, "POST", `${path}/abort`, {});
    expect(abort.status, abort.text).toBe(200);
    expect(abort.json).toMatchObject({ aborted: true, runId: run.runId });
    const ended = await waitRunEnd(gA, project, session, run.runId, 15_000);
    expect(ended.status).toBe("aborted");
    const entries = await replaySession(gA, project, session);
    expect(terminalsOf(entries, run.runId).map((e) => e.type)).toEqual(["run_aborted"]);
    // The steering message is part of this run (between its run_started and run_aborted).
    const startIdx = entries.findIndex((e) => e.type === "run_started" && e.runId === run.runId);
    const endIdx = entries.findIndex((e) => e.type === "run_aborted" && e.runId === run.runId);
    const steered = entries.findIndex((e) => e.data.includes(steerToken));
    expect(steered).toBeGreaterThan(startIdx);
    expect(steered).toBeLessThan(endIdx);

    const idle = await call<CommandAnswer>(gB, "POST", `${path}/commands`, { type: "get_state" });
    expect(idle.status, idle.text).toBe(200);
    expect(idle.json).toMatchObject({ success: true, data: { isStreaming: false } });

    // Round trip of get_state through B (the gateway that never saw the prompt).
    const times: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t0 = performance.now();
      const res = await call<CommandAnswer>(gB, "POST", `${path}/commands`, { type: "get_state" });
      times.push(performance.now() - t0);
      expect(res.status, res.text).toBe(200);
      expect(res.json.success).toBe(true);
    }
    const owner = await c.leaseOf(project);
    printFigures("cross-gateway control", {
      "steer answer": steer.json,
      "abort answer": abort.json,
      "lease holder": owner?.token ?? "none",
      "get_state round trip p50 (ms)": percentile(times, 50).toFixed(1),
      "get_state round trip p95 (ms)": percentile(times, 95).toFixed(1),
      "get_state round trip max (ms)": Math.max(...times).toFixed(1),
      commands: times.length,
    });
  });
});
