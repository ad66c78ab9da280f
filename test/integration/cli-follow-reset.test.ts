// `pifleet prompt --follow` follows one run. When the events it resumes from were trimmed away
// (a later run wrote more than PI_FLEET_STREAM_MAXLEN entries meanwhile) the run's end may be
// among them: on the `stream_reset` the CLI asks the run and stops if it ended (it used to wait
// for ever for an end event that no longer exists). The CLI's follow() runs in-process against
// a real gateway; output goes to a discarded stream.

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

describe("CLI follow of a run whose events were trimmed", () => {
  it("stops with the run's outcome on the stream_reset", async () => {
    await stack.call("POST", "/v1/projects", { name: "trimmed" });
    const sid = ((await stack.call("POST", "/v1/projects/trimmed/sessions")).json as Json).id as string;
    const base = `/v1/projects/trimmed/sessions/${sid}`;
    const first = (await stack.call("POST", `${base}/prompt`, { text: "[[reply:first]]" })).json as Json;
    // A second run of 400 deltas pushes every event of the first out of the stream.
    const second = (await stack.call("POST", `${base}/prompt`, { text: "[[deltas:400]]" })).json as Json;
    await waitFor(
      async () =>
        ((await stack.call("GET", `${base}/runs/${second.runId}`)).json as Json).status === "finished",
      { timeoutMs: 20_000 },
    );

    const configDir = await mkdtemp(join(tmpdir(), "pf-cli-follow-"));
    const sink = new PassThrough();
    sink.resume();
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
    const followed = follow(ctx, "trimmed", sid, {
      after: first.offset as string,
      runId: first.runId as string,
    });
    const result = await Promise.race([
      followed,
      new Promise<"still following">((resolve) => setTimeout(() => resolve("still following"), 5000)),
    ]);
    await rm(configDir, { recursive: true, force: true });
    expect(result).toMatchObject({ outcome: "finished" });
  });
});
