/**
 * Stops the running runs of an org an operator disabled (`PATCH /v1/admin/orgs/{org}
 * {disabled: true}`). Queued runs are refused where they start (start-run.lua reads the same org
 * flag and the run is recorded `run_cancelled {reason: "org_disabled"}`); a run already running
 * would go on to its end. Every `intervalMs` this worker reads the flag (`disabled` = "1" in the
 * org hash, `Keys.org`; no hash, as for open mode's `default`, is enabled) of each org it runs
 * something for, and interrupts those runs: `run_interrupted {reason: "org_disabled"}`. Polling
 * rather than a broadcast from the gateway: a missed message would let a run go on, a read cannot
 * be missed, and the cost is one pipelined HGET per org with running runs per interval.
 */
import type { Ownership } from "./ownership.ts";
import type { WorkerContext } from "./worker-context.ts";

/** How often running runs' orgs are checked (ms). */
export const DISABLED_ORG_CHECK_MS = 1000;

/** The `reason` of a run stopped because its org was disabled (as run_cancelled's). */
export const ORG_DISABLED = "org_disabled";

/** The watch of one worker; see the module comment. */
export class DisabledOrgWatch {
  private readonly ctx: WorkerContext;
  private readonly ownership: Ownership;
  private readonly timer: NodeJS.Timeout;
  private checking: Promise<void> | undefined;
  private closed = false;

  /** Starts checking every `intervalMs` (ms). */
  constructor(ctx: WorkerContext, ownership: Ownership, intervalMs = DISABLED_ORG_CHECK_MS) {
    this.ctx = ctx;
    this.ownership = ownership;
    this.timer = setInterval(() => {
      this.checking ??= this.check().finally(() => {
        this.checking = undefined;
      });
    }, intervalMs);
    this.timer.unref();
  }

  /**
   * One check: interrupts the running runs of every disabled org. Never throws (a Redis error
   * is logged; the next check tries again).
   */
  async check(): Promise<void> {
    if (this.closed) return;
    const orgs = [...this.ownership.runningOrgs()];
    if (orgs.length === 0) return;
    let flags: (string | null)[];
    try {
      const pipeline = this.ctx.redis.pipeline();
      for (const org of orgs) pipeline.hget(this.ctx.keys.org(org), "disabled");
      const replies = (await pipeline.exec()) ?? [];
      flags = replies.map(([err, value]) => (err ? null : (value as string | null)));
    } catch (err) {
      this.ctx.logger.warn({ err: (err as Error).message }, "could not check whether orgs are disabled");
      return;
    }
    await Promise.all(
      orgs.map(async (org, i) => {
        if (flags[i] !== "1" || this.closed) return;
        const runs = await this.ownership.interruptOrg(org, ORG_DISABLED).catch((err: Error) => {
          this.ctx.logger.warn({ err: err.message, org }, "could not interrupt a disabled org's runs");
          return 0;
        });
        if (runs > 0) this.ctx.logger.warn({ org, runs }, "org disabled: running runs interrupted");
      }),
    );
  }

  /** Stops checking; waits for a check in progress. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.checking;
  }
}
