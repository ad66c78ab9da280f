/**
 * Process and machine figures from Linux `/proc`: CPU time of a pid (all threads), its resident
 * set size, machine-wide CPU and this process's open-file limit. Off Linux every reader returns
 * undefined and the tables show "n/a".
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** USER_HZ, the unit of utime/stime in /proc (100 on every mainstream Linux ABI). */
const TICKS_PER_S = (() => {
  try {
    const n = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    return Number.isInteger(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

/** User + system CPU seconds of `pid` (all its threads) so far, or undefined when unreadable. */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // After "pid (comm) ", fields[0] is the state (field 3), so utime (14) and stime (15) are 11 and 12.
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
  } catch {
    return undefined;
  }
}

/** Resident set size of `pid` in bytes (`VmRSS`), or undefined. */
export function rssBytes(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Busy and total CPU ticks of the whole machine (`/proc/stat`), or undefined. */
function machineTicks(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already inside user)
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

/** The soft and hard `RLIMIT_NOFILE` of this process, or undefined. */
export function openFileLimit(): { soft: number; hard: number } | undefined {
  try {
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    if (!m) return undefined;
    const num = (s: string | undefined): number => (s === "unlimited" ? Number.POSITIVE_INFINITY : Number(s));
    return { soft: num(m[1]), hard: num(m[2]) };
  } catch {
    return undefined;
  }
}

/** CPU use over an interval: per named group of pids (cores, 1 = one core busy) and machine-wide. */
export class CpuWindow {
  private readonly groups: Map<string, number[]>;
  private readonly start = new Map<string, number | undefined>();
  private readonly machine0 = machineTicks();
  private readonly t0 = performance.now();

  constructor(groups: Record<string, number[]>) {
    this.groups = new Map(Object.entries(groups));
    for (const [name, pids] of this.groups) this.start.set(name, sum(pids));
  }

  /** Cores used per group since construction; `machine` is the busy fraction of all CPUs (0..1). */
  end(): { cores: Record<string, number | undefined>; machine: number | undefined; seconds: number } {
    const seconds = (performance.now() - this.t0) / 1000;
    const cores: Record<string, number | undefined> = {};
    for (const [name, pids] of this.groups) {
      const a = this.start.get(name);
      const b = sum(pids);
      cores[name] = a === undefined || b === undefined ? undefined : (b - a) / seconds;
    }
    const m1 = machineTicks();
    const m0 = this.machine0;
    const machine = m0 && m1 && m1.total > m0.total ? (m1.busy - m0.busy) / (m1.total - m0.total) : undefined;
    return { cores, machine, seconds };
  }
}

/** Sum of a figure over several processes (undefined when any is unreadable). */
export function sumOver(pids: number[], read: (pid: number) => number | undefined): number | undefined {
  let total = 0;
  for (const pid of pids) {
    const v = read(pid);
    if (v === undefined) return undefined;
    total += v;
  }
  return total;
}

function sum(pids: number[]): number | undefined {
  return sumOver(pids, cpuSeconds);
}
