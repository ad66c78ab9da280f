/**
 * CPU time of the bench's processes over an interval (Linux `/proc/<pid>/stat`; this process
 * through `process.cpuUsage()`), to show where the cores went during the throughput runs.
 * Elsewhere the figures are simply absent.
 */
import { readFileSync } from "node:fs";

/** USER_HZ: the unit of utime/stime in /proc (100 on every mainstream Linux ABI). */
const TICKS_PER_S = 100;

/** User + system CPU seconds of `pid` so far, or undefined when unreadable. */
function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  if (pid === process.pid) {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // After "pid (comm) ", fields[0] is the state (field 3), so utime (14) and stime (15) are 11 and 12.
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
  } catch {
    return undefined;
  }
}

/** Snapshot of several processes' CPU time; `since()` gives cores used per process since then. */
export class CpuMeter {
  private readonly start: Map<string, number | undefined>;
  private readonly startedAt = performance.now();
  private readonly pids: Map<string, number | undefined>;

  constructor(pids: Map<string, number | undefined>) {
    this.pids = pids;
    this.start = new Map([...pids].map(([name, pid]) => [name, cpuSeconds(pid)]));
  }

  /**
   * Per process: CPU seconds used per wall second since the snapshot (1.00 = one core busy) and,
   * when `units` is given, CPU ms per unit (e.g. per run).
   */
  since(units?: number): string {
    const wall = (performance.now() - this.startedAt) / 1000;
    const parts: string[] = [];
    let total = 0;
    for (const [name, pid] of this.pids) {
      const a = this.start.get(name);
      const b = cpuSeconds(pid);
      if (a === undefined || b === undefined) continue;
      total += b - a;
      const perUnit = units ? ` = ${(((b - a) * 1000) / units).toFixed(2)} ms/run` : "";
      parts.push(`${name} ${((b - a) / wall).toFixed(2)}${perUnit}`);
    }
    if (parts.length === 0) return "n/a";
    const totalPerUnit = units ? `, ${((total * 1000) / units).toFixed(2)} ms/run` : "";
    return `${parts.join(", ")} (total ${(total / wall).toFixed(2)} cores${totalPerUnit})`;
  }
}
