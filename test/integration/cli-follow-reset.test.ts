// `pifleet prompt --follow` follows one run. When the events it resumes from were trimmed away
// (a later run wrote more than PI_FLEET_STREAM_MAXLEN entries meanwhile) the run's end may be
// among them: on the `stream_reset` the CLI asks the run and, if it ended, reads the retained
// events up to the stream's end (the run's end may be among them), then shows the outcome the run
// record names — with a failed run's reason (it used to wait for ever for an end event that no
// longer exists, then to stop at the reset and print nothing). The CLI's follow() runs in-process
// against a real gateway; its output is captured.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Context } from "../../apps/cli/src/context.ts";
import { follow } from "../../apps/cli/src/follow.ts";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

type Json = Record<string, unknown>;
let stack: InProcessStack;

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "cli-follow-reset", {
    env: { PI_FLEET_STREAM_MAXLEN: "100" },
  });
});

afterAll(async () => {
  await stack?.close();
});

/** A CLI context on the stack's gateway whose stdout and stderr are collected in `text()`. */
async function capture(): Promise<{ ctx: Context; text: () => string; done: () => Promise<void> }> {
  const configDir = await mkdtemp(join(tmpdir(), "pf-cli-follow-"));
  const sink = new PassThrough();
  let text = "";
  sink.on("data", (c: Buffer) => {
    text += c.toString("utf8");
  });
  const ctx = new Context(
    {
      stdout: sink,
      stderr: sink,
      stdin: new PassThrough(),
      env: { PIFLEET_URL: stack.gateway.url, PIFLEET_CONFIG_DIR: configDir },
      onInterrupt: () => () => {},
    },
    false,
  );
  return { ctx, text: () => text, done: () => rm(configDir, { recursive: true, force: true }) };
}

/** A session in `project` whose first run (`text`) ended and whose events a second run trimmed away. */
async function trimmedRun(project: string, text: string, status: string) {
  await stack.call("POST", "/v1/projects", { name: project });
  const sid = ((await stack.call("POST", `/v1/projects/${project}/sessions`)).json as Json).id as string;
  const base = `/v1/projects/${project}/sessions/${sid}`;
  const first = (await stack.call("POST", `${base}/prompt`, { text })).json as Json;
  // A second run of 400 deltas pushes every event of the first out of the stream.
  const second = (await stack.call("POST", `${base}/prompt`, { text: "[[deltas:400]]" })).json as Json;
  await waitFor(
    async () =>
      ((await stack.call("GET", `${base}/runs/${second.runId}`)).json as Json).status === "finished",
    { timeoutMs: 20_000 },
  );
  const record = (await stack.call("GET", `${base}/runs/${first.runId}`)).json as Json;
  expect(record.status).toBe(status);
  return { sid, first, record };
}

/** follow()'s result, or "still following" after 5 s. */
function settled<T>(promise: Promise<T>): Promise<T | "still following"> {
  return Promise.race([
    promise,
    new Promise<"still following">((resolve) => setTimeout(() => resolve("still following"), 5000)),
  ]);
}

describe("CLI follow of a run whose events were trimmed", () => {
  it("stops with the run's outcome on the stream_reset", async () => {
    const { sid, first } = await trimmedRun("trimmed", "[[reply:first]]", "finished");
    const { ctx, text, done } = await capture();
    const result = await settled(
      follow(ctx, "trimmed", sid, { after: first.offset as string, runId: first.runId as string }),
    );
    await done();
    expect(result).toMatchObject({ outcome: "finished", endEvent: { type: "run_finished" } });
    expect(text()).toContain("! stream reset (trimmed)");
    expect(text()).toContain("✓ run finished");
    // None of the later run's text (its deltas are retained) was shown as this run's.
    expect(text()).not.toMatch(/\bd399\b/);
  });

  it("shows the retained tail of a run whose start was trimmed, up to its own end event", async () => {
    await stack.call("POST", "/v1/projects", { name: "trimmed-tail" });
    const sid = ((await stack.call("POST", "/v1/projects/trimmed-tail/sessions")).json as Json).id as string;
    const base = `/v1/projects/trimmed-tail/sessions/${sid}`;
    const run = (await stack.call("POST", `${base}/prompt`, { text: "[[deltas:400]]" })).json as Json;
    await waitFor(
      async () => ((await stack.call("GET", `${base}/runs/${run.runId}`)).json as Json).status === "finished",
      { timeoutMs: 20_000 },
    );
    const { ctx, text, done } = await capture();
    const result = await settled(
      follow(ctx, "trimmed-tail", sid, { after: run.offset as string, runId: run.runId as string }),
    );
    await done();
    expect(result).toMatchObject({
      outcome: "finished",
      endEvent: { type: "run_finished", usage: expect.anything() },
    });
    expect(text()).toContain("! stream reset (trimmed)");
    expect(text()).toMatch(/\bd398 d399 /);
    expect(text()).not.toMatch(/\bd0 /);
    expect(text()).toContain("✓ run finished");
  });

  it("prints a failed run's reason from the run record and reports the failure", async () => {
    const { sid, first, record } = await trimmedRun("trimmed-failed", "[[fail:400]]", "failed");
    expect(record.error).toEqual(expect.any(String));
    const { ctx, text, done } = await capture();
    const result = await settled(
      follow(ctx, "trimmed-failed", sid, { after: first.offset as string, runId: first.runId as string }),
    );
    await done();
    // It used to stop at the reset with no end event: `pifleet prompt` exited 1 printing nothing.
    expect(result).toMatchObject({
      outcome: "failed",
      endEvent: { type: "run_failed", runId: first.runId, error: record.error },
    });
    expect(text()).toContain(`✗ run failed: ${String(record.error).split("\n")[0]!.slice(0, 40)}`);
  });
});
