/**
 * Child process of `bench/stream.ts`: the writer. Appends bench events to session streams with
 * `EventLog.append(ref, "", …)` — the production append path (append-events.lua: XADD + PUBLISH
 * in one call), unfenced — at a paced rate, round-robin over the sessions, one event per call,
 * each stamped with the shared monotonic clock just before the call.
 */
import { connectRedis, createKeys } from "@pi-fleet/redis";
import { EventLog } from "@pi-fleet/streams";
import { benchEvent } from "./event.ts";
import { Histogram } from "./histogram.ts";
import type { ProducerApi, StreamSpace } from "./protocol.ts";
import { serve } from "./rpc.ts";
import { errorMessage, nowUs, sleep } from "./util.ts";

/**
 * Appends in flight beyond which due events are skipped (the producer is behind and says so in
 * `skipped`) rather than queued: a queue in front of Redis would count as delivery latency.
 */
const MAX_IN_FLIGHT = 256;
const TICK_MS = 2;

let space: StreamSpace | undefined;
let log: EventLog | undefined;
const seqs = new Map<string, number>();

let sessions: string[] = [];
let rate = 0;
let rateStartUs = 0;
let scheduled = 0;
let cursor = 0;
let timer: NodeJS.Timeout | undefined;
let inFlight = 0;

let windowStartUs = nowUs();
let produced = 0;
let skipped = 0;
let failed = 0;
let firstError: string | undefined;
const append = new Histogram();

function ready(): { log: EventLog; space: StreamSpace } {
  if (!log || !space) throw new Error("init first");
  return { log, space };
}

function nextSeq(session: string): number {
  const s = seqs.get(session) ?? 0;
  seqs.set(session, s + 1);
  return s;
}

function appendOne(session: string): void {
  const { log: events, space: sp } = ready();
  const t = nowUs();
  inFlight++;
  events
    .append({ org: sp.org, project: sp.project, session }, "", [{ event: benchEvent(nextSeq(session), t) }])
    .then(
      () => {
        inFlight--;
        produced++;
        append.record(nowUs() - t);
      },
      (err: unknown) => {
        inFlight--;
        failed++;
        firstError ??= errorMessage(err);
      },
    );
}

function tick(): void {
  const due = Math.floor(((nowUs() - rateStartUs) / 1e6) * rate) - scheduled;
  if (due <= 0) return;
  const room = Math.max(0, MAX_IN_FLIGHT - inFlight);
  const send = Math.min(due, room);
  skipped += due - send;
  scheduled += due;
  for (let i = 0; i < send; i++) {
    const session = sessions[cursor % sessions.length] as string;
    cursor++;
    appendOne(session);
  }
}

serve<ProducerApi>({
  async init(req) {
    space = req;
    const redis = await connectRedis(req.redisUrl, "command", "bench-producer");
    log = new EventLog(redis, createKeys(req.prefix), req.maxLen);
    return null;
  },
  async fill({ session, count, batch }) {
    const { log: events, space: sp } = ready();
    const t0 = nowUs();
    for (let done = 0; done < count; ) {
      const n = Math.min(batch, count - done);
      const batchEvents = Array.from({ length: n }, () => ({ event: benchEvent(nextSeq(session), nowUs()) }));
      await events.append({ org: sp.org, project: sp.project, session }, "", batchEvents);
      done += n;
    }
    return { ms: (nowUs() - t0) / 1000 };
  },
  async rate(req) {
    if (timer) clearInterval(timer);
    timer = undefined;
    sessions = req.sessions;
    rate = req.eventsPerSec;
    rateStartUs = nowUs();
    scheduled = 0;
    if (rate > 0 && sessions.length > 0) timer = setInterval(tick, TICK_MS);
    return null;
  },
  async mark() {
    windowStartUs = nowUs();
    produced = 0;
    skipped = 0;
    failed = 0;
    firstError = undefined;
    append.reset();
    return null;
  },
  async report() {
    return {
      produced,
      seconds: (nowUs() - windowStartUs) / 1e6,
      skipped,
      failed,
      firstError,
      append: append.toSparse(),
    };
  },
  async drain() {
    const deadline = Date.now() + 30_000;
    while (inFlight > 0 && Date.now() < deadline) await sleep(5);
    return null;
  },
});
