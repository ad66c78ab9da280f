// Property test of resumable session streams against a real Redis (EventLog + StreamHub +
// StreamSubscription, no gateway): a writer appends random batches to a stream with a small random
// MAXLEN while a client subscribes, disconnects at random points, stays away while a random number
// of entries is written (so retention may trim past its cursor) and resumes from its last offset.
// Property: the client's concatenated deliveries are exactly the writer's history (ids + data), or —
// where its cursor fell behind retention (at a resume, or mid-connection when the writer outran a
// replay) — an explicit `reset("trimmed", F)` where F was the first retained entry, followed by
// exactly the entries from F on. Never a duplicate, never a
// regression, never a silent skip. An uninterrupted subscriber running alongside sees the whole
// history without any reset.

import { connectRedis, createKeys, type Redis } from "@pi-fleet/redis";
import {
  EventLog,
  type ResetReason,
  type SessionRef,
  type StreamEntry,
  StreamHub,
  type StreamRef,
  StreamSubscription,
  type SubscriptionSink,
} from "@pi-fleet/streams";
import { uniquePrefix } from "@pi-fleet/testkit";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { registerSession as register } from "./helpers/register-session.ts";

const keys = createKeys(uniquePrefix("stream-prop"));

/** Creates the session's registry record: appends refuse a session that does not exist. */
async function registerSession(ref: SessionRef): Promise<void> {
  await register(writerRedis, keys, ref);
}
let writerRedis: Redis;
let readerRedis: Redis;
let sub: Redis;
let hub: StreamHub;

const SEED = 20_240_611;
const NUM_RUNS = 100;
/** Per scenario: the client must have received the writer's last entry within this time. */
const SCENARIO_TIMEOUT_MS = 8000;

/** What one connection of the client did, in delivery order. */
type Delivery =
  | { kind: "entry"; conn: number; id: string; data: string }
  | { kind: "reset"; conn: number; reason: ResetReason; firstOffset: string };

/** A generated scenario. */
interface Scenario {
  maxLen: number;
  /** Writer batches: entries per XADD script call and a pause (ms) after it. */
  batches: { size: number; pauseMs: number }[];
  /** Client connections: entries to receive before disconnecting, entries written while away. */
  disconnects: { after: number; awayEntries: number }[];
}

/** Outcome figures of one scenario. */
interface Figures {
  entries: number;
  connections: number;
  resets: number;
  /** Resets after entries on the same connection (a replay overrun by retention). */
  midConnectionResets: number;
  /** Resets where only the cursor entry itself had been trimmed (nothing missing). */
  conservativeResets: number;
  trimmedAtEnd: number;
  violations: Violation[];
}

/** Wakes every waiter on each `fire()`; loops re-check their condition (no polling). */
class Signal {
  private waiters: (() => void)[] = [];

  fire(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const resolve of w) resolve();
  }

  wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

function scenarioArb(): fc.Arbitrary<Scenario> {
  return fc.record({
    maxLen: fc.integer({ min: 20, max: 200 }),
    batches: fc.array(
      fc.record({
        size: fc.integer({ min: 1, max: 40 }),
        pauseMs: fc.constantFrom(0, 0, 0, 1, 2),
      }),
      { minLength: 5, maxLength: 60 },
    ),
    disconnects: fc.array(
      fc.record({
        after: fc.integer({ min: 1, max: 90 }),
        awayEntries: fc.oneof(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 100, max: 500 })),
      }),
      { minLength: 1, maxLength: 12 },
    ),
  });
}

async function runScenario(s: Scenario, run: number): Promise<Figures> {
  const ref: SessionRef = { org: "acme", project: "prop", session: `s${run}` };
  await registerSession(ref);
  const writeLog = new EventLog(writerRedis, keys, s.maxLen);
  // Reads never trim; its maxLen is irrelevant.
  const readLog = new EventLog(readerRedis, keys, s.maxLen);
  const streamKey = keys.stream(ref.org, ref.project, ref.session);

  // Writer-side record: every entry in order, and every id that was the first retained entry
  // right after some append (the only places retention can start).
  const history: StreamEntry[] = [];
  const indexOf = new Map<string, number>();
  const retentionStarts = new Set<string>();
  const signal = new Signal();
  let writerDone = false;
  let lastWritten: string | undefined;

  // The client.
  const deliveries: Delivery[] = [];
  let connReceived = 0;
  let conn = 0;
  let lastReceived: string | undefined;
  let failure: unknown;
  const clientSink = (c: number): SubscriptionSink => ({
    entry: (e) => {
      deliveries.push({ kind: "entry", conn: c, id: e.id, data: e.data });
      lastReceived = e.id;
      connReceived++;
      signal.fire();
    },
    reset: (reason, firstOffset) => deliveries.push({ kind: "reset", conn: c, reason, firstOffset }),
    failed: (err) => {
      failure = err;
    },
    ended: (data) => {
      failure = new Error(`unexpected end: ${data}`);
    },
  });

  // An uninterrupted subscriber from the very beginning.
  const steady: Delivery[] = [];
  const steadySub = new StreamSubscription(readLog, hub, ref, "0", {
    entry: (e) => steady.push({ kind: "entry", conn: 0, id: e.id, data: e.data }),
    reset: (reason, firstOffset) => steady.push({ kind: "reset", conn: 0, reason, firstOffset }),
    failed: (err) => {
      failure = err;
    },
    ended: (data) => {
      failure = new Error(`unexpected end: ${data}`);
    },
  });
  await steadySub.start();

  let startWriter: () => void = () => {};
  const writerGo = new Promise<void>((resolve) => {
    startWriter = resolve;
  });
  const writer = (async () => {
    await writerGo;
    let n = 0;
    for (const b of s.batches) {
      const events = Array.from({ length: b.size }, () => ({ event: { type: "n", i: n++, run } }));
      const ids = await writeLog.append(ref, "", events);
      ids.forEach((id, k) => {
        const data = JSON.stringify(events[k]?.event);
        indexOf.set(id, history.length);
        history.push({ id, data });
      });
      lastWritten = ids.at(-1);
      // No other writer: what is first now stays first until our next append.
      const head = await writerRedis.xrange(streamKey, "-", "+", "COUNT", "1");
      if (head[0]) retentionStarts.add(head[0][0]);
      signal.fire();
      if (b.pauseMs > 0) await new Promise((r) => setTimeout(r, b.pauseMs));
    }
    writerDone = true;
    signal.fire();
  })();

  const caughtUp = () => writerDone && lastReceived !== undefined && lastReceived === lastWritten;
  const client = (async () => {
    let cursor = "0";
    for (;;) {
      connReceived = 0;
      const subscription = new StreamSubscription(readLog, hub, ref, cursor, clientSink(conn));
      await subscription.start();
      if (conn === 0) startWriter();
      const d = s.disconnects[conn];
      // Receive d.after entries on this connection (the last one: everything), then disconnect.
      while (!caughtUp() && (d === undefined || connReceived < d.after)) await signal.wait();
      await subscription.close();
      if (caughtUp()) return;
      // Stay away while the writer appends d.awayEntries more entries (or finishes).
      const target = history.length + (d?.awayEntries ?? 0);
      while (!writerDone && history.length < target) await signal.wait();
      cursor = lastReceived ?? cursor;
      conn++;
    }
  })();

  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `scenario ${run} did not converge in ${SCENARIO_TIMEOUT_MS} ms: written ${history.length}, ` +
              `received ${deliveries.length}, last written ${lastWritten}, last received ${lastReceived}`,
          ),
        ),
      SCENARIO_TIMEOUT_MS,
    );
  });
  try {
    await Promise.race([Promise.all([writer, client]), timeout]);
    // The steady subscriber gets the last entry live, shortly.
    const steadyDeadline = Date.now() + 3000;
    while (steady.at(-1)?.kind !== "entry" || (steady.at(-1) as { id: string }).id !== lastWritten) {
      if (Date.now() > steadyDeadline) break;
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    clearTimeout(timer);
    await steadySub.close();
  }
  if (failure) throw failure;

  const trimmedAtEnd = history.length - (await readerRedis.xlen(streamKey));
  const resetNotes = { midConnection: 0, conservative: 0 };
  const violations = checkDeliveries(deliveries, history, indexOf, retentionStarts, resetNotes);
  const expectedSteady = history.map((e) => ({ kind: "entry", conn: 0, id: e.id, data: e.data }));
  if (JSON.stringify(steady) !== JSON.stringify(expectedSteady)) {
    violations.push({
      category: "the uninterrupted subscriber differs from the history",
      detail: `${steady.length} deliveries for ${history.length} entries`,
    });
  }
  await writerRedis.del(streamKey, keys.streamMeta(ref.org, ref.project, ref.session));
  return {
    entries: history.length,
    connections: conn + 1,
    resets: deliveries.filter((d) => d.kind === "reset").length,
    midConnectionResets: resetNotes.midConnection,
    conservativeResets: resetNotes.conservative,
    trimmedAtEnd,
    violations,
  };
}

/** One way the property was broken, with where and how. */
interface Violation {
  category: string;
  detail: string;
}

/**
 * Checks the property on one client's deliveries against the writer's history and returns every
 * violation (empty = the property holds).
 */
function checkDeliveries(
  deliveries: readonly Delivery[],
  history: readonly StreamEntry[],
  indexOf: ReadonlyMap<string, number>,
  retentionStarts: ReadonlySet<string>,
  resetNotes: { midConnection: number; conservative: number },
): Violation[] {
  const out: Violation[] = [];
  const around = (i: number) =>
    JSON.stringify(deliveries.slice(Math.max(0, i - 2), i + 2).map((d) => ({ ...d, data: undefined })));
  const violate = (i: number, category: string, what: string) =>
    out.push({ category, detail: `delivery #${i}: ${what}; deliveries around it: ${around(i)}` });
  const wasFirstRetained = (id: string) =>
    retentionStarts.has(id)
      ? "was the first retained entry after some append"
      : "was never the first retained entry";
  let prev = -1; // index in history of the last entry delivered
  let pendingReset: { reason: ResetReason; firstOffset: string } | undefined;
  const entriesInConn = new Map<number, number>();
  deliveries.forEach((d, i) => {
    if (d.kind === "reset") {
      if (d.reason !== "trimmed") {
        violate(
          i,
          `reset "${d.reason}" for a cursor that fell behind retention (expected "trimmed")`,
          `cursor ${history[prev]?.id}, firstOffset ${d.firstOffset} (${wasFirstRetained(d.firstOffset)})`,
        );
      }
      // A reset may also come in the middle of a connection: a client still replaying (pages of
      // 50) while the writer appends and retention trims past its cursor was overrun, and is told
      // so. It must satisfy the same rules as one at a resume (checked below).
      if ((entriesInConn.get(d.conn) ?? 0) > 0) resetNotes.midConnection++;
      const f = indexOf.get(d.firstOffset);
      if (f === undefined) violate(i, "reset firstOffset is not an entry", d.firstOffset);
      else if (f <= prev) {
        violate(
          i,
          "reset firstOffset not beyond the cursor (a stale first entry)",
          `firstOffset ${d.firstOffset}`,
        );
      } else if (f === prev + 1) {
        // Retention removed the cursor entry and nothing after it: nothing is missing, but the
        // subscription cannot tell that from a gap (Redis keeps no record of trimmed ids), so it
        // resets conservatively. Allowed, counted.
        resetNotes.conservative++;
      }
      if (!retentionStarts.has(d.firstOffset)) {
        violate(i, "reset firstOffset was never the first retained entry", d.firstOffset);
      }
      pendingReset = d;
      return;
    }
    entriesInConn.set(d.conn, (entriesInConn.get(d.conn) ?? 0) + 1);
    const idx = indexOf.get(d.id);
    if (idx === undefined) {
      violate(i, "unknown entry id", d.id);
      return;
    }
    if (d.data !== history[idx]?.data) violate(i, "entry data differs from what was written", d.id);
    if (idx <= prev) {
      violate(i, "duplicate or regression", `${d.id} after ${history[prev]?.id}`);
      return;
    }
    if (pendingReset !== undefined) {
      if (d.id !== pendingReset.firstOffset) {
        violate(
          i,
          "first entry after a reset is not its firstOffset (entries skipped)",
          `reset("${pendingReset.reason}", ${pendingReset.firstOffset}) then ${d.id}: ` +
            `${idx - (indexOf.get(pendingReset.firstOffset) ?? idx)} entries skipped; ${d.id} ${wasFirstRetained(d.id)}`,
        );
      }
    } else if (idx !== prev + 1) {
      violate(
        i,
        "silent gap: entries skipped without a stream_reset",
        `after ${history[prev]?.id ?? "the start"} came ${d.id}, skipping ${idx - prev - 1} entries ` +
          `(${history[prev + 1]?.id} … ${history[idx - 1]?.id}); ${d.id} ${wasFirstRetained(d.id)}`,
      );
    }
    pendingReset = undefined;
    prev = idx;
  });
  if (prev !== history.length - 1) {
    out.push({
      category: "client did not receive up to the last entry",
      detail: `${prev + 1}/${history.length}`,
    });
  }
  return out;
}

beforeAll(async () => {
  const url = inject("redisUrl");
  writerRedis = await connectRedis(url, "command", "test-stream-prop-writer");
  readerRedis = await connectRedis(url, "command", "test-stream-prop-reader");
  sub = await connectRedis(url, "subscriber", "test-stream-prop-sub");
  hub = new StreamHub(sub);
});

afterAll(async () => {
  await hub?.close();
  await writerRedis?.quit();
  await readerRedis?.quit();
});

describe("resumable session streams (property)", () => {
  it("a resumed stream equals the uninterrupted one, or carries an explicit stream_reset", async () => {
    const started = Date.now();
    const totals = {
      runs: 0,
      entries: 0,
      connections: 0,
      resets: 0,
      midConnectionResets: 0,
      conservativeResets: 0,
      runsWithReset: 0,
      trimmedRuns: 0,
    };
    // Every scenario runs (no early stop), so one test run reports every kind of violation seen.
    const byCategory = new Map<string, { count: number; example: string }>();
    let failedRuns = 0;
    let run = 0;
    await fc.assert(
      fc.asyncProperty(scenarioArb(), async (s) => {
        const r = run++;
        const f = await runScenario(s, r);
        totals.runs++;
        totals.entries += f.entries;
        totals.connections += f.connections;
        totals.resets += f.resets;
        totals.midConnectionResets += f.midConnectionResets;
        totals.conservativeResets += f.conservativeResets;
        if (f.resets > 0) totals.runsWithReset++;
        if (f.trimmedAtEnd > 0) totals.trimmedRuns++;
        if (f.violations.length > 0) failedRuns++;
        for (const v of f.violations) {
          const c = byCategory.get(v.category);
          if (c) c.count++;
          else {
            byCategory.set(v.category, {
              count: 1,
              example: `scenario #${r} (maxLen ${s.maxLen}, ${f.entries} entries): ${v.detail}\n    scenario: ${JSON.stringify(s)}`,
            });
          }
        }
      }),
      { seed: SEED, numRuns: NUM_RUNS, endOnFailure: true },
    );
    console.log(
      `[stream-property] seed ${SEED}: ${totals.runs} scenarios in ${Date.now() - started} ms, ${totals.entries} entries, ` +
        `${totals.connections - totals.runs} resumes, ${totals.resets} resets in ${totals.runsWithReset} scenarios ` +
        `(${totals.midConnectionResets} mid-connection, ${totals.conservativeResets} for a trimmed cursor with nothing after it missing), ` +
        `${totals.trimmedRuns} scenarios trimmed by retention, ${failedRuns} scenarios violating the property`,
    );
    const report = [...byCategory].map(([category, c]) => `- ${category}: ${c.count}×, e.g. ${c.example}`);
    if (report.length > 0) console.log(`[stream-property] violations:\n${report.join("\n")}`);
    expect(report, "property violations (category: count, first example)").toEqual([]);
    // The generator must actually exercise both paths.
    expect(totals.resets).toBeGreaterThan(0);
    expect(totals.connections - totals.runs - totals.resets).toBeGreaterThan(0);
  });
});

/**
 * An EventLog that lets retention trim the stream at a chosen moment of a subscription's start:
 * right before its `bounds` read (opening: epoch and last id) or before its first `readPage`
 * (replay, where the cursor is validated in the same consistent read). This pins down,
 * deterministically, the windows the property test above hits by chance.
 */
class TrimmingLog extends EventLog {
  trimBefore: "bounds" | "readPage" | undefined;
  /** XTRIM MINID: entries older than this id are removed. */
  trimTo = "";

  private async maybeTrim(at: "bounds" | "readPage", ref: StreamRef): Promise<void> {
    if (this.trimBefore !== at) return;
    this.trimBefore = undefined;
    await this.redis.xtrim(this.address(ref).stream, "MINID", this.trimTo);
  }

  override async bounds(ref: StreamRef): ReturnType<EventLog["bounds"]> {
    await this.maybeTrim("bounds", ref);
    return super.bounds(ref);
  }

  override async readPage(ref: StreamRef, after: string, count: number): ReturnType<EventLog["readPage"]> {
    await this.maybeTrim("readPage", ref);
    return super.readPage(ref, after, count);
  }
}

describe("retention trimming while a subscription starts (deterministic)", () => {
  for (const at of ["bounds", "readPage"] as const) {
    it(`a cursor trimmed away right before the subscription's ${at} read yields reset("trimmed", first retained)`, async () => {
      const log = new TrimmingLog(writerRedis, keys, 100_000);
      const ref: SessionRef = { org: "acme", project: "prop", session: `race-${at}` };
      await registerSession(ref);
      const ids: string[] = [];
      for (let i = 0; i < 10; i++) ids.push(...(await log.append(ref, "", [{ event: { type: "n", i } }])));
      // The client resumes after entry 2; retention removes entries 0–5 at the chosen moment.
      log.trimBefore = at;
      log.trimTo = ids[6] ?? "";
      const got: string[] = [];
      const subscription = new StreamSubscription(log, hub, ref, ids[2], {
        entry: (e) => got.push(e.id),
        reset: (reason, firstOffset) => got.push(`reset ${reason} ${firstOffset}`),
        failed: (err) => got.push(`failed ${String(err)}`),
        ended: (data) => got.push(`ended ${data}`),
      });
      await subscription.start();
      await subscription.close();
      // Entries 3–5 are gone: the client must be told, and the reset names entry 6.
      expect(got).toEqual([`reset trimmed ${ids[6]}`, ...ids.slice(6)]);
    });
  }
});
