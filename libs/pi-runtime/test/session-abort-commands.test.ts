// PiSession.abortCommands(): the running user bash commands and compactions end at once with
// pi's cancelled outcome (an operator disabled the org), including a compact stopped before pi
// started its compaction; the session stays usable.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type FauxResponseStep, fauxAssistantMessage } from "@earendil-works/pi-ai";
import { describe, expect, it } from "vitest";
import { openSession, type PiSession } from "../src/index.ts";
import { eventually, fauxRuntime, onCleanup, sessionDirs } from "./helpers.ts";

/** A summary request that answers only once its request is aborted (a summarizer that hangs). */
function hangingSummary(calls: { count: number }): FauxResponseStep {
  return (_context, options) => {
    calls.count++;
    return new Promise((resolve) => {
      const answer = () => resolve(fauxAssistantMessage("late summary"));
      if (options?.signal?.aborted) answer();
      else options?.signal?.addEventListener("abort", answer, { once: true });
    });
  };
}

/** A session with enough history to compact (pi keeps the newest 20k tokens, ~80k chars). */
async function compactableSession(): Promise<{ session: PiSession; calls: { count: number } }> {
  const dirs = await sessionDirs();
  const { runtime, faux } = await fauxRuntime();
  const session = await openSession({ runtime, ...dirs });
  onCleanup(() => session.dispose());
  faux.setResponses([fauxAssistantMessage("done"), fauxAssistantMessage("x ".repeat(50_000))]);
  expect((await session.run("first", {}, () => {})).status).toBe("finished");
  expect((await session.run("second", {}, () => {})).status).toBe("finished");
  const calls = { count: 0 };
  faux.setResponses([hangingSummary(calls), hangingSummary(calls)]);
  return { session, calls };
}

describe("abortCommands", () => {
  it("cancels a running user bash command as abort_bash does", async () => {
    const dirs = await sessionDirs();
    const { runtime } = await fauxRuntime();
    const session = await openSession({ runtime, ...dirs });
    onCleanup(() => session.dispose());
    expect(session.abortCommands()).toBe(0);
    const started = Date.now();
    const running = session.command({ type: "bash", command: "touch started; sleep 30" });
    expect(await eventually(() => existsSync(join(dirs.projectDir, "started")))).toBe(true);
    expect(session.abortCommands()).toBe(1);
    const result = await running;
    expect(result).toMatchObject({ success: true, data: { cancelled: true } });
    expect((result as { data: { exitCode?: number } }).data.exitCode).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(session.messages().at(-1)).toMatchObject({ role: "bashExecution", cancelled: true });
    // Nothing left running; later commands run normally.
    expect(session.abortCommands()).toBe(0);
    expect(await session.command({ type: "bash", command: "echo again" })).toMatchObject({
      success: true,
      data: { exitCode: 0, cancelled: false },
    });
  });

  it("cancels a compaction waiting for its summary", async () => {
    const { session, calls } = await compactableSession();
    const compacting = session.command({ type: "compact" });
    expect(await eventually(() => calls.count === 1)).toBe(true);
    expect(session.abortCommands()).toBe(1);
    expect(await compacting).toEqual({ success: false, error: "Compaction cancelled" });
    expect(session.messages().some((m) => (m as { role?: string }).role === "compactionSummary")).toBe(false);
  });

  it("cancels a compact before pi started its compaction", async () => {
    const { session, calls } = await compactableSession();
    const compacting = session.command({ type: "compact" });
    // Synchronously after the call: pi's compact() is still awaiting its own abort() first.
    expect(session.abortCommands()).toBe(1);
    expect(await compacting).toEqual({ success: false, error: "Compaction cancelled" });
    expect(calls.count).toBeLessThanOrEqual(1);
    // The cancel was for that command only: the next compact runs (and is cancelled in turn).
    const next = session.command({ type: "compact" });
    expect(await eventually(() => calls.count >= 1)).toBe(true);
    expect(session.abortCommands()).toBe(1);
    expect(await next).toEqual({ success: false, error: "Compaction cancelled" });
  });
});
