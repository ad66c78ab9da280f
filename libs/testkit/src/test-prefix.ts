// Per-test-file Redis key prefixes so test files can share one Redis (and run in parallel)
// without seeing each other's keys, streams or queues.

import { randomBytes } from "node:crypto";

/**
 * Returns `t-<label-slug>-<random6>`: the label lower-cased, non-alphanumerics collapsed to "-",
 * trimmed to 32 chars ("x" if nothing is left), plus 6 random hex chars. Example:
 * `uniquePrefix("Queue fairness")` → `"t-queue-fairness-3fa9c1"`.
 */
export function uniquePrefix(label: string): string {
  const slug =
    label
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 32)
      .replace(/-+$/, "") || "x";
  return `t-${slug}-${randomBytes(3).toString("hex")}`;
}
