// StreamSubscription against a real Redis: the live entries that arrive while a replay waits for a
// slow client are buffered, and after the replay they are delivered at the client's pace too —
// the sink's congestion is asked after each one, as during the replay. They used to be written in
// one go (up to 10,000 entries), which alone could put a reading client past its buffer limit.
import { connectRedis, createKeys, type Redis } from "@pi-fleet/redis";
import {
  EventLog,
  type SessionRef,
  type StreamEntry,
  StreamHub,
  StreamSubscription,
  type SubscriptionSink,
} from "@pi-fleet/streams";
import { uniquePrefix, waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { registerSession } from "./helpers/register-session.ts";

const keys = createKeys(uniquePrefix("stream-pacing"));
let redis: Redis;
let sub: Redis;
let hub: StreamHub;
let log: EventLog;

beforeAll(async () => {
  const url = inject("redisUrl");
  redis = await connectRedis(url, "command", "test-stream-pacing");
  sub = await connectRedis(url, "subscriber", "test-stream-pacing-sub");
  hub = new StreamHub(sub);
  log = new EventLog(redis, keys, 100_000);
});

afterAll(async () => {
  await hub?.close();
  await redis?.quit();
});

const event = (n: number) => ({ event: { type: "message_update", n } });

/**
 * A sink whose client "reads" one batch of `batch` entries per congestion wait: congested() says
 * so after every `batch` entries and counts the entries delivered between two of its answers.
 */
class PacedSink implements SubscriptionSink {
  readonly ids: string[] = [];
  /** Entries delivered since congested() last returned a wait. */
  sinceWait = 0;
  /** The most entries delivered without congested() having returned a wait in between. */
  maxRun = 0;
  /** At this many entries the client stops reading until `resume()`. */
  private readonly stallAt: number;
  private readonly stalled: Promise<void>;
  resume: () => void = () => {};

  private readonly batch: number;

  constructor(batch: number, stallAt: number) {
    this.batch = batch;
    this.stallAt = stallAt;
    this.stalled = new Promise((r) => {
      this.resume = r;
    });
  }

  entry(entry: StreamEntry): void {
    this.ids.push(entry.id);
    this.sinceWait++;
    this.maxRun = Math.max(this.maxRun, this.sinceWait);
  }

  reset(): void {}

  failed(err: unknown): void {
    throw err;
  }

  ended(data: string): void {
    throw new Error(`unexpected end: ${data}`);
  }

  congested(): Promise<void> | undefined {
    if (this.ids.length === this.stallAt) {
      this.sinceWait = 0;
      return this.stalled;
    }
    if (this.sinceWait < this.batch) return undefined;
    this.sinceWait = 0;
    return new Promise((r) => setTimeout(r, 1));
  }
}

describe("StreamSubscription", () => {
  it("delivers the live entries buffered during a replay at the client's pace, in order", async () => {
    const ref: SessionRef = { org: "acme", project: "p", session: "paced" };
    await registerSession(redis, keys, ref);
    // A backlog to replay: 230 entries, read in pages of 50 (the last one 30).
    for (let i = 0; i < 230; i += 46) {
      await log.append(
        ref,
        "",
        Array.from({ length: 46 }, (_, k) => event(i + k)),
      );
    }
    // The client stops reading at entry 220, inside the replay's last page.
    const sink = new PacedSink(50, 220);
    const subscription = new StreamSubscription(log, hub, ref, "0", sink);
    // A live-only subscriber on the same hub: the hub hands each announcement to every watcher of
    // the stream at once, so once it has the live entries, the paced one has buffered them too.
    const probed: string[] = [];
    const probe = new StreamSubscription(log, hub, ref, undefined, {
      entry: (e) => probed.push(e.id),
      reset: () => {},
      failed: (err) => {
        throw err;
      },
      ended: () => {},
    });
    await probe.open();
    await probe.catchUp();
    await subscription.open();
    const catchingUp = subscription.catchUp();
    await waitFor(() => sink.ids.length === 220);
    // Meanwhile 2,000 live entries arrive: the replay has read its last page, they are buffered.
    for (let i = 230; i < 2230; i += 100) {
      await log.append(
        ref,
        "",
        Array.from({ length: 100 }, (_, k) => event(i + k)),
      );
    }
    await waitFor(() => probed.length === 2000);
    sink.resume();
    await catchingUp;
    await waitFor(() => sink.ids.length === 2230, { timeoutMs: 10_000 });
    // In order, each once.
    const stored = (await log.range(ref, "0", 10_000)).map((e) => e.id);
    expect(sink.ids).toEqual(stored);
    // Never more than one batch without asking the client (the buffer used to come in one go).
    expect(sink.maxRun).toBeLessThanOrEqual(51);
    await subscription.close();
    await probe.close();
  });
});
