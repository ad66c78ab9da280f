/**
 * Child process of `bench/stream.ts`: the naive fan-out design as a baseline — one Redis
 * connection per subscriber, each looping `XREAD BLOCK 0 COUNT 100 STREAMS <key> <last id>`
 * (starting at `$`). No HTTP: this process stands for a gateway that would then write each
 * entry to its client. Latency and sequence checks are the same as the SSE clients'.
 */
import { connectRedis, type Redis } from "@pi-fleet/redis";
import { readBenchFields } from "./event.ts";
import { Histogram } from "./histogram.ts";
import type { ClientReport, NaiveClientsApi, OpenResult } from "./protocol.ts";
import { serve } from "./rpc.ts";
import { errorMessage, mapLimit, nowUs } from "./util.ts";

interface Reader {
  redis: Redis;
  key: string;
  last: string;
  lastSeq: number;
  closing: boolean;
}

const readers = new Set<Reader>();
const latency = new Histogram();
let measuring = false;
let windowStartUs = nowUs();
let windowFrames = 0;
let gaps = 0;
let dups = 0;
let ended = 0;

/**
 * `XREAD` reply → entries of the one stream read. RESP2 gives [[key, [[id, [field, value, …]], …]]];
 * ioredis 6 hands a single stream's reply over as [key, [[id, fields], …]]: both are accepted.
 */
function entries(reply: unknown): [string, string][] {
  const out: [string, string][] = [];
  if (!Array.isArray(reply)) return out;
  const stream: unknown = typeof reply[0] === "string" ? reply : reply[0];
  if (!Array.isArray(stream) || !Array.isArray(stream[1])) return out;
  for (const entry of stream[1] as unknown[]) {
    if (!Array.isArray(entry)) continue;
    const [id, fields] = entry as [unknown, unknown];
    if (typeof id !== "string" || !Array.isArray(fields)) continue;
    for (let i = 0; i + 1 < fields.length; i += 2) {
      if (fields[i] === "d" && typeof fields[i + 1] === "string") out.push([id, fields[i + 1] as string]);
    }
  }
  return out;
}

async function loop(r: Reader): Promise<void> {
  while (!r.closing) {
    let reply: unknown;
    try {
      reply = await r.redis.call("XREAD", "BLOCK", "0", "COUNT", "100", "STREAMS", r.key, r.last);
    } catch {
      if (!r.closing) {
        ended++;
        readers.delete(r);
      }
      return;
    }
    const now = nowUs();
    for (const [id, data] of entries(reply)) {
      r.last = id;
      const f = readBenchFields(data);
      if (!f) continue;
      if (r.lastSeq >= 0 && f.seq !== r.lastSeq + 1) {
        if (f.seq <= r.lastSeq) dups++;
        else gaps++;
      }
      r.lastSeq = f.seq;
      if (measuring) {
        windowFrames++;
        latency.record(now - f.tUs);
      }
    }
  }
}

serve<NaiveClientsApi>({
  async open({ redisUrl, keys, concurrency, timeoutMs }): Promise<OpenResult> {
    const t0 = nowUs();
    let opened = 0;
    let failed = 0;
    const errors = new Set<string>();
    const deadline = Date.now() + timeoutMs;
    await mapLimit(keys, concurrency, async (key, i) => {
      if (Date.now() > deadline) {
        failed++;
        if (errors.size < 5) errors.add(`not opened within ${timeoutMs} ms`);
        return;
      }
      try {
        const redis = await connectRedis(redisUrl, "subscriber", `bench-naive-${i}`);
        const r: Reader = { redis, key, last: "$", lastSeq: -1, closing: false };
        readers.add(r);
        void loop(r);
        opened++;
      } catch (err) {
        failed++;
        if (errors.size < 5) errors.add(errorMessage(err));
      }
    });
    return { opened, failed, errors: [...errors], ms: (nowUs() - t0) / 1000 };
  },
  async mark() {
    measuring = true;
    windowStartUs = nowUs();
    windowFrames = 0;
    latency.reset();
    return null;
  },
  async report(): Promise<ClientReport> {
    const seconds = (nowUs() - windowStartUs) / 1e6;
    measuring = false;
    return {
      frames: windowFrames,
      seconds,
      latency: latency.toSparse(),
      gaps,
      dups,
      lagging: 0,
      resets: 0,
      ended,
      open: readers.size,
    };
  },
  async closeAll() {
    const all = [...readers];
    for (const r of all) {
      r.closing = true;
      r.redis.disconnect();
    }
    readers.clear();
    return { closed: all.length };
  },
});
