/**
 * Reads a V8 `.cpuprofile` (the gateway run with `--cpu-prof`) and says where its main thread
 * spent a time window, as shares of its busy (non-idle) samples: each sample is attributed to the innermost frame that matches a category
 * (socket writes, ioredis, the streams lib, …), plus the top functions by self time. Sample
 * timestamps are V8 TimeTicks (CLOCK_MONOTONIC µs on Linux), the clock `nowUs()` reads, so the
 * window is cut exactly. Only the main JS thread is sampled (not GC helper or libuv threads).
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Where the main thread went: category → share of its busy (non-idle) time (0..1). */
export interface ProfileSummary {
  samples: number;
  /** Profile time span covered by the window's samples, ms. */
  windowMs: number;
  /** Share of the window the main thread was idle (waiting in epoll). */
  idle: number;
  categories: { name: string; share: number }[];
  top: { name: string; share: number }[];
}

const WRITE_FNS = new Set([
  "writev",
  "writeGeneric",
  "writevGeneric",
  "_writeGeneric",
  "_writev",
  "writeUtf8String",
  "writeLatin1String",
  "writeBuffer",
  "handleWriteReq",
]);

/** The category of one frame, or undefined when it says nothing (then its caller decides). */
function categoryOf(f: CallFrame): string | undefined {
  const { functionName: fn, url } = f;
  if (fn === "(garbage collector)") return "GC (main-thread part)";
  if (fn === "(idle)") return "idle";
  if (fn === "(program)") return "V8/native, unattributed";
  if (WRITE_FNS.has(fn) || /node:_http_outgoing|node:internal\/streams\/writable/.test(url)) {
    return "socket writes (write / writev syscalls and their JS path)";
  }
  if (/ioredis|redis-parser|standard-as-callback/.test(url)) return "ioredis (pub/sub input, commands)";
  if (fn === "onStreamRead" || /node:internal\/streams\/readable/.test(url)) return "socket reads";
  if (url.includes("libs/streams/")) return "streams lib (hub dispatch, subscriptions)";
  if (url.includes("apps/gateway/src/sse/")) return "SseStream (frame strings, flush, buffer check)";
  if (/node:_http_server|node:_http_common|node:_http_incoming/.test(url))
    return "node:http request handling";
  if (/fastify|avvio|find-my-way|light-my-request|pino/.test(url)) return "fastify / pino";
  if (url.includes("apps/gateway/")) return "gateway routes";
  if (/node:internal\/timers|node:timers/.test(url)) return "timers";
  return undefined;
}

function label(f: CallFrame): string {
  const name = f.functionName || "(anonymous)";
  if (!f.url) return name;
  const file = f.url.startsWith("node:") ? f.url : basename(f.url);
  return `${name} ${file}:${f.lineNumber + 1}`;
}

/** Summarizes the samples of `file` taken between `fromUs` and `toUs` (monotonic µs). */
export function summarizeProfile(file: string, fromUs: number, toUs: number, top = 12): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const catCache = new Map<number, string>();
  const category = (id: number): string => {
    const cached = catCache.get(id);
    if (cached !== undefined) return cached;
    let cur: number | undefined = id;
    let found = "other";
    while (cur !== undefined) {
      const node = byId.get(cur);
      const c = node ? categoryOf(node.callFrame) : undefined;
      if (c !== undefined) {
        found = c;
        break;
      }
      cur = parent.get(cur);
    }
    catCache.set(id, found);
    return found;
  };

  const cats = new Map<string, number>();
  const self = new Map<string, number>();
  let t = profile.startTime;
  let first = Number.NaN;
  let last = Number.NaN;
  let count = 0;
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    t += dt;
    if (t < fromUs || t > toUs) continue;
    const id = profile.samples[i] ?? 0;
    // A sample stands for the interval since the previous one.
    if (Number.isNaN(first)) first = t;
    last = t;
    count++;
    total += dt;
    const c = category(id);
    cats.set(c, (cats.get(c) ?? 0) + dt);
    const node = byId.get(id);
    if (node) {
      const l = label(node.callFrame);
      self.set(l, (self.get(l) ?? 0) + dt);
    }
  }
  const idleUs = cats.get("idle") ?? 0;
  const busy = total - idleUs;
  const share = (m: Map<string, number>, skip: string) =>
    [...m]
      .filter(([name]) => name !== skip)
      .map(([name, us]) => ({ name, share: busy > 0 ? us / busy : 0 }))
      .sort((a, b) => b.share - a.share);
  return {
    samples: count,
    windowMs: (last - first) / 1000,
    idle: total > 0 ? idleUs / total : 0,
    categories: share(cats, "idle"),
    top: share(self, "(idle)").slice(0, top),
  };
}
