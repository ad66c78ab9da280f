/**
 * Stops the running runs and session commands of an org an operator disabled (`PATCH
 * /v1/admin/orgs/{org} {disabled: true}`). Queued runs are refused where they start
 * (start-run.lua reads the same org flag and the run is recorded `run_cancelled {reason:
 * "org_disabled"}`); a run or a command (a user `bash` up to its time cap, a `compact`) already
 * running would go on to its end. Every `intervalMs` this worker reads the flag (`disabled` = "1"
 * in the org hash, `Keys.org`; no hash, as for open mode's `default`, is enabled) of each org it
 * runs something for, interrupts those runs (`run_interrupted {reason: "org_disabled"}`) and stops
 * those commands (they answer pi's cancelled result: bash `{cancelled: true}`, compact
 * "Compaction cancelled"). Polling rather than a broadcast from the gateway: a missed message
 * would let a run go on, a read cannot be missed, and the cost is one pipelined HGET per org with
 * running work per interval.
 * An interrupt is not awaited by the check: pi's abort waits for the agent to settle, which a
 * tool that ignores its abort signal can delay for ever, and one stuck org must not stop the
 * watch for the others (nor the worker's shutdown). While an org's interrupt is under way (at
 * most {@link INTERRUPT_WAIT_MS}) it is not started again. Stopping commands waits for nothing
 * (it signals pi's aborts), so it is done on every check that finds the org disabled: a command
 * that arrived meanwhile is stopped too.
 */
import type { Ownership } from "./ownership.ts";
import type { WorkerContext } from "./worker-context.ts";

/** How often the orgs of running runs and commands are checked (ms). */
export const DISABLED_ORG_CHECK_MS = 1000;

/** How long an org's interrupt counts as under way before a later check may try again (ms). */
export const INTERRUPT_WAIT_MS = 10_000;

/** The `reason` of a run stopped because its org was disabled (as run_cancelled's). */
export const ORG_DISABLED = "org_disabled";

/** The watch of one worker; see the module comment. */
export class DisabledOrgWatch {
  private readonly ctx: WorkerContext;
  private readonly ownership: Ownership;
  private readonly timer: NodeJS.Timeout;
  private checking: Promise<void> | undefined;
  /** Orgs whose interrupt is under way. */
  private readonly interrupting = new Set<string>();
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
   * One check: stops the running commands of every disabled org and starts interrupting its
   * running runs (not awaited, see the module comment). Never throws (a Redis error is logged;
   * the next check tries again).
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
    orgs.forEach((org, i) => {
      if (flags[i] !== "1" || this.closed) return;
      this.stopCommands(org);
      this.interrupt(org);
    });
  }

  /** Stops the org's commands in flight here (signals only: nothing to wait for). */
  private stopCommands(org: string): void {
    try {
      const commands = this.ownership.abortOrgCommands(org);
      if (commands > 0) this.ctx.logger.warn({ org, commands }, "org disabled: running commands stopped");
    } catch (err) {
      this.ctx.logger.warn({ err: (err as Error).message, org }, "could not stop a disabled org's commands");
    }
  }

  private interrupt(org: string): void {
    if (this.interrupting.has(org)) return;
    this.interrupting.add(org);
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, INTERRUPT_WAIT_MS);
      timer.unref();
    });
    const interrupted = this.ownership.interruptOrg(org, ORG_DISABLED).then(
      (runs) => {
        if (runs > 0) this.ctx.logger.warn({ org, runs }, "org disabled: running runs interrupted");
      },
      (err: Error) =>
        this.ctx.logger.warn({ err: err.message, org }, "could not interrupt a disabled org's runs"),
    );
    void Promise.race([interrupted, waited]).finally(() => {
      clearTimeout(timer);
      this.interrupting.delete(org);
    });
  }

  /** Stops checking; waits for a check in progress (not for interrupts: the drain aborts runs itself). */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.checking;
  }
}
