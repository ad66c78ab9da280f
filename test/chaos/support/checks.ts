// Shared helpers of the chaos tests: stream bracket checks, token counting in ran.txt, small
// waits, and a figure printer.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { getRun, type RunView, TERMINAL_EVENTS, TERMINAL_STATES } from "./api.ts";
import type { Cluster } from "./cluster.ts";
import type { Entry } from "./follower.ts";

/** Sleeps `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Occurrences of each line of a project's `ran.txt` (missing file = empty). */
export async function ranTokens(cluster: Cluster, project: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  let text = "";
  try {
    text = await readFile(join(cluster.projectDir(project), "ran.txt"), "utf8");
  } catch {
    return counts;
  }
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (t) counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  return counts;
}

/** Terminal events of one run. */
export function terminalsOf(entries: readonly Entry[], runId: string): Entry[] {
  return entries.filter((e) => e.runId === runId && TERMINAL_EVENTS.has(e.type));
}

/** Index of the first entry matching `type` (and run), or -1. */
export function indexOf(entries: readonly Entry[], type: string, runId?: string): number {
  return entries.findIndex((e) => e.type === type && (runId === undefined || e.runId === runId));
}

/** Polls `fn` every `intervalMs` until it returns a value (not undefined); throws after `timeoutMs`. */
export async function poll<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs: number,
  intervalMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let value: T | undefined;
    try {
      value = await fn();
    } catch {
      value = undefined;
    }
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Percentile (0–100) of a list of numbers (nearest rank). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

/** Prints a block of figures (visible in vitest's output). */
export function printFigures(title: string, figures: Record<string, unknown>): void {
  const lines = Object.entries(figures).map(
    ([k, v]) => `  ${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`,
  );
  console.log(`\n=== ${title} ===\n${lines.join("\n")}\n`);
}

/** A run a test submitted and waits for. */
export interface TrackedRun {
  project: string;
  session: string;
  runId: string;
}

/**
 * Polls every run (round robin over `gateways`) until all are terminal or `timeoutMs` passes.
 * Returns each run's last known status (non-terminal ones are stuck) — never throws on a timeout.
 */
export async function settleRuns(
  gateways: readonly string[],
  runs: readonly TrackedRun[],
  timeoutMs: number,
): Promise<Map<string, RunView>> {
  const last = new Map<string, RunView>();
  const deadline = Date.now() + timeoutMs;
  let open = [...runs];
  for (let round = 0; open.length > 0 && Date.now() < deadline; round++) {
    const next: TrackedRun[] = [];
    for (const [i, r] of open.entries()) {
      const res = await getRun(gateways[(round + i) % gateways.length] ?? "", r.project, r.session, r.runId);
      if (res.status === 200) last.set(r.runId, res.json);
      if (res.status !== 200 || !TERMINAL_STATES.has(res.json.status)) next.push(r);
    }
    open = next;
    if (open.length > 0) await sleep(100);
  }
  return last;
}
