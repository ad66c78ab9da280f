// Derives a run's outcome and usage from the pi events of that run, plus the fleet's own abort
// flag (an abort during a tool call ends with stopReason "error", hazard H15).
import type { RunUsage } from "@pi-fleet/contracts";
import type { RunOutcome } from "./types.ts";

/** Observes one run's events (pi AgentSessionEvents) and classifies how it ended. */
export class RunTracker {
  #usage: RunUsage = { input: 0, output: 0, cacheRead: 0, cacheWrite: 0, totalTokens: 0, cost: 0 };
  #lastStopReason: string | undefined;
  #lastErrorMessage: string | undefined;
  #thrown: string | undefined;
  #abortRequested = false;

  /** Records that abort() was called during this run. */
  markAborted(): void {
    this.#abortRequested = true;
  }

  /** True once abort() was called during this run. */
  get abortRequested(): boolean {
    return this.#abortRequested;
  }

  /** Records that pi's prompt() threw (a preflight error such as missing auth). */
  markThrown(message: string): void {
    this.#thrown = message;
  }

  /**
   * Feeds one pi event: assistant `message_end` events (usage, stopReason), and `compaction_end`
   * (the usage of the summary pi generated inside the run, which pi counts in the session's stats).
   */
  observe(event: { type: string; message?: unknown; result?: unknown }): void {
    if (event.type === "compaction_end") {
      addUsage(this.#usage, (event.result as { usage?: unknown } | undefined)?.usage);
      return;
    }
    if (event.type !== "message_end") return;
    const message = event.message as
      | { role?: unknown; stopReason?: unknown; errorMessage?: unknown; usage?: unknown }
      | undefined;
    if (message?.role !== "assistant") return;
    this.#lastStopReason = typeof message.stopReason === "string" ? message.stopReason : undefined;
    this.#lastErrorMessage = typeof message.errorMessage === "string" ? message.errorMessage : undefined;
    addUsage(this.#usage, message.usage);
  }

  /**
   * The outcome: "aborted" if abort was requested; else "failed" if prompt() threw or the last
   * assistant message stopped with "error" (or there was none); else "finished" (stop, length,
   * toolUse). A stopReason "aborted" without a requested abort also counts as "aborted".
   */
  outcome(): RunOutcome {
    const base = {
      usage: { ...this.#usage },
      ...(this.#lastStopReason ? { stopReason: this.#lastStopReason } : {}),
    };
    if (this.#abortRequested || this.#lastStopReason === "aborted") return { status: "aborted", ...base };
    if (this.#thrown !== undefined) return { status: "failed", error: this.#thrown, ...base };
    if (this.#lastStopReason === undefined)
      return { status: "failed", error: "no assistant response", ...base };
    if (this.#lastStopReason === "error") {
      return { status: "failed", error: this.#lastErrorMessage ?? "provider error", ...base };
    }
    return { status: "finished", ...base };
  }
}

/** Adds a pi-ai Usage (`cost.total` in USD) to `sum`; ignores malformed values. */
function addUsage(sum: RunUsage, usage: unknown): void {
  if (typeof usage !== "object" || usage === null) return;
  const u = usage as Record<string, unknown>;
  sum.input += num(u.input);
  sum.output += num(u.output);
  sum.cacheRead += num(u.cacheRead);
  sum.cacheWrite += num(u.cacheWrite);
  sum.totalTokens += num(u.totalTokens);
  const cost = u.cost;
  if (typeof cost === "object" && cost !== null) sum.cost += num((cost as Record<string, unknown>).total);
}

function num(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}
