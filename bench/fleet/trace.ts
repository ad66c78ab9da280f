/**
 * Where the time goes, seen from Redis: a `MONITOR` connection records every command the
 * gateway and the workers send, with Redis's microsecond timestamp and the sending connection
 * (named through `CLIENT LIST`: `gw-…:cmd`, `w1:queue`, …). Before each traced sample the bench
 * sends a marker (`ECHO <tag>`) and starts its clock right after the reply, so the marker's
 * timestamp is the sample's t0 on Redis's clock; every command of the sample is placed relative
 * to it, without comparing clocks of different processes. Lua script SHAs are named from the
 * script sources (pi-fleet's `.lua` files and BullMQ's bundled scripts).
 *
 * MONITOR makes Redis copy every command to the monitor connection, which slows it down a
 * little: traced samples are only for the breakdown, never for the headline figures.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { connectRedis, type Redis } from "@pi-fleet/redis";
import { isRecord, median } from "./util.ts";

interface Line {
  us: number;
  addr: string;
  args: string[];
}

/** One step of a sample's timeline (ms after t0). */
export interface Step {
  atMs: number;
  who: string;
  what: string;
}

/** A step's median over the traced samples. */
export interface StepSummary {
  who: string;
  what: string;
  medianMs: number;
  /** In how many of the samples it occurred. */
  seen: number;
}

const sha1 = (text: string): string => createHash("sha1").update(text).digest("hex");

/**
 * SHA → script name for pi-fleet's Lua files (`libs/<lib>/lua/<name>.lua`, alone and prefixed with the
 * directory's `lib-*.lua` as libs/streams composes them) and BullMQ's bundled scripts. Scripts
 * defined inline in TypeScript stay unnamed (shown with their first key).
 */
async function scriptNames(repoRoot: string): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  const libs = join(repoRoot, "libs");
  for (const lib of readdirSync(libs)) {
    const dir = join(libs, lib, "lua");
    let files: string[];
    try {
      files = readdirSync(dir).filter((n) => n.endsWith(".lua"));
    } catch {
      continue;
    }
    const prefixes = files.filter((f) => f.startsWith("lib-")).map((f) => readFileSync(join(dir, f), "utf8"));
    for (const f of files) {
      const body = readFileSync(join(dir, f), "utf8");
      const name = `${lib === "streams" ? "" : `${lib} `}${f.replace(".lua", "")}`;
      names.set(sha1(body), name);
      for (const prefix of prefixes) names.set(sha1(`${prefix}\n${body}`), name);
    }
  }
  const bull = join(repoRoot, "node_modules", "bullmq", "dist", "esm", "scripts");
  for (const f of readdirSync(bull).filter((n) => n.endsWith(".js") && n !== "index.js")) {
    const mod: unknown = await import(pathToFileURL(join(bull, f)).href);
    if (!isRecord(mod)) continue;
    for (const value of Object.values(mod)) {
      if (isRecord(value) && typeof value.name === "string" && typeof value.content === "string") {
        names.set(sha1(value.content), `bullmq ${value.name}`);
      }
    }
  }
  return names;
}

/** Records every command Redis executes until stopped. */
export class RedisTracer {
  private readonly lines: Line[] = [];
  private readonly names = new Map<string, string>();
  /** Connections that existed before the current sample (a step from any other one is "new conn"). */
  private readonly known = new Set<string>();
  private readonly ownAddrs = new Set<string>();
  private readonly monitor: Redis;
  private readonly cmd: Redis;
  private readonly scripts: Map<string, string>;

  private constructor(monitor: Redis, cmd: Redis, scripts: Map<string, string>) {
    this.monitor = monitor;
    this.cmd = cmd;
    this.scripts = scripts;
  }

  static async start(url: string, repoRoot: string): Promise<RedisTracer> {
    const scripts = await scriptNames(repoRoot);
    const cmd = await connectRedis(url, "bullmq", "bench-tracer");
    const base = await connectRedis(url, "bullmq", "bench-monitor");
    const monitor = await base.monitor();
    base.disconnect();
    const tracer = new RedisTracer(monitor, cmd, scripts);
    monitor.on("monitor", (time: string, args: string[], source: string) => {
      if (source === "lua") return; // commands run inside scripts: the script itself is traced
      const [sec = "0", frac = "0"] = time.split(".");
      const us = Number(sec) * 1e6 + Number(frac.padEnd(6, "0").slice(0, 6));
      tracer.lines.push({ us, addr: source, args });
    });
    await tracer.refreshNames();
    for (const addr of tracer.names.keys()) tracer.known.add(addr);
    return tracer;
  }

  /** Sends a marker and resolves once Redis answered it (start the sample's clock right after). */
  async mark(tag: string): Promise<void> {
    await this.cmd.echo(tag);
  }

  /** Forgets recorded lines (keeps connection names). */
  clear(): void {
    this.lines.length = 0;
  }

  async stop(): Promise<void> {
    this.monitor.disconnect();
    this.cmd.disconnect();
  }

  async refreshNames(): Promise<void> {
    const list = String(await this.cmd.client("LIST"));
    for (const row of list.split("\n")) {
      const addr = /(?:^| )addr=(\S+)/.exec(row)?.[1];
      const name = /(?:^| )name=(\S*)/.exec(row)?.[1];
      if (!addr) continue;
      if (name === "bench-tracer" || name === "bench-monitor") this.ownAddrs.add(addr);
      if (name) this.names.set(addr, name);
    }
  }

  private who(addr: string): string {
    const name = this.names.get(addr);
    if (!name) return `conn ${addr}`;
    // BullMQ names a Worker's blocking connection `<prefix>:<base64 of the queue name>`.
    const blocking = /^[^:]+:q:([A-Za-z0-9+/=]+)$/.exec(name)?.[1];
    if (blocking) {
      const queue = Buffer.from(blocking, "base64")
        .toString("utf8")
        .replace(/\{[^}]*\}/, "{…}");
      return `worker:blocking(${queue})`;
    }
    return name.replace(/^gw-[^:]+/, "gateway").replace(/^w\d+/, "worker");
  }

  private what(args: string[]): string {
    const cmd = (args[0] ?? "?").toUpperCase();
    if (cmd === "EVALSHA" || cmd === "EVAL") {
      const sha = cmd === "EVAL" ? sha1(args[1] ?? "") : (args[1] ?? "");
      const firstKey = (args[3] ?? "").replace(/\{[^}]*\}/, "{…}").replace(/:[0-9a-f-]{36}$/, ":<id>");
      const name = this.scripts.get(sha) ?? `lua ${sha.slice(0, 8)} ${firstKey}`;
      // BullMQ scripts: name the queue from the first key (`<prefix>:q:<queue>:<suffix>`).
      const queue = /^[^:]+:q:([^:]+):/.exec(args[3] ?? "")?.[1];
      return name.startsWith("bullmq") && queue
        ? `${name} (${queue.replace(/\{[^}]*\}/, "{project}")})`
        : name;
    }
    if (cmd === "CLIENT" || cmd === "PUBSUB") return `${cmd} ${(args[1] ?? "").toUpperCase()}`;
    if (cmd === "PUBLISH" || cmd === "SUBSCRIBE") {
      const channel = (args[1] ?? "").replace(/^[^:]+:/, "").replace(/\{[^}]*\}/, "{…}");
      return `${cmd} ${channel.replace(/^ctl-reply:.*/, "ctl-reply:<gateway>").replace(/^ctl:.*/, "ctl:<worker>")}`;
    }
    const key = (args[1] ?? "").replace(/\{[^}]*\}/, "{…}").replace(/:[0-9a-f-]{36}$/, ":<id>");
    return `${cmd} ${key}`.trim();
  }

  /**
   * The sample marked `tag`: commands from `tag` to `endMs` after it whose arguments mention one
   * of `needles`, or that came from a connection opened during the sample. Unknown connections
   * are named by a fresh `CLIENT LIST`.
   */
  async timeline(tag: string, endMs: number, needles: readonly string[]): Promise<Step[]> {
    const start = this.lines.find((l) => l.args[0]?.toUpperCase() === "ECHO" && l.args[1] === tag);
    if (!start) throw new Error(`trace marker ${tag} not seen by MONITOR`);
    const end = start.us + endMs * 1000;
    const window = this.lines.filter(
      (l) => l.us >= start.us && l.us <= end && l !== start && !this.ownAddrs.has(l.addr),
    );
    if (window.some((l) => !this.names.has(l.addr))) await this.refreshNames();
    const steps: Step[] = [];
    for (const l of window) {
      const text = l.args.join(" ");
      const fresh = !this.known.has(l.addr);
      if (!fresh && !needles.some((n) => text.includes(n))) continue;
      steps.push({
        atMs: (l.us - start.us) / 1000,
        who: `${this.who(l.addr)}${fresh ? " (new conn)" : ""}`,
        what: this.what(l.args),
      });
    }
    await this.refreshNames();
    for (const addr of this.names.keys()) this.known.add(addr);
    for (const l of this.lines) this.known.add(l.addr);
    return steps;
  }
}

/**
 * Medians over samples of the FIRST occurrence of each step (who + what) in a sample; steps seen
 * in fewer than `minShare` of the samples are dropped as background noise.
 */
export function summarize(samples: readonly Step[][], minShare = 0.6): StepSummary[] {
  const byKey = new Map<string, { who: string; what: string; at: number[] }>();
  for (const steps of samples) {
    const seen = new Set<string>();
    for (const s of [...steps].sort((a, b) => a.atMs - b.atMs)) {
      const key = `${s.who}\u0000${s.what}`;
      if (seen.has(key)) continue;
      seen.add(key);
      let entry = byKey.get(key);
      if (!entry) {
        entry = { who: s.who, what: s.what, at: [] };
        byKey.set(key, entry);
      }
      entry.at.push(s.atMs);
    }
  }
  return [...byKey.values()]
    .filter((e) => e.at.length >= minShare * samples.length)
    .map((e) => ({ who: e.who, what: e.what, medianMs: median(e.at), seen: e.at.length }))
    .sort((a, b) => a.medianMs - b.medianMs);
}
