// PiFleetSocket subscriptions against scripted in-memory sockets: a subscription closed and
// re-opened on the same socket never receives what the closed one had in flight (event frames
// name the stream, not the subscription: only those after the new subscription's own
// `subscribed` ack are its own), a subscribe refused because the gateway was still setting up the
// closed one is retried, and a consumer that falls behind is unsubscribed and resubscribed from
// its last queued offset instead of queueing without bound.
import { describe, expect, it } from "vitest";
import { PiFleetError, type PiFleetSubscription, type StreamItem } from "../src/index.ts";
import { type FakeSocket, type Frame, harness, tick } from "./fake-socket.ts";

const event = (offset: string, type = "message_update"): Frame => ({
  kind: "event",
  projectId: "p",
  sessionId: "s",
  offset,
  event: { type },
});

/** Acknowledges the last subscribe frame sent on `ws` (as the gateway does before its events). */
function ack(ws: FakeSocket, offset?: string): Frame {
  const subscribe = ws.frames("subscribe").at(-1)!;
  ws.push({
    kind: "subscribed",
    id: subscribe.id,
    projectId: subscribe.projectId,
    ...(subscribe.sessionId === undefined ? {} : { sessionId: subscribe.sessionId }),
    ...(offset === undefined ? {} : { offset }),
  });
  return subscribe;
}

/** A pending extension-UI dialog `id`, as the gateway re-sends it (no offset) or as streamed. */
const dialog = (id: string, offset?: string): Frame => ({
  kind: "event",
  projectId: "p",
  sessionId: "s",
  ...(offset === undefined ? {} : { offset }),
  event: { type: "extension_ui_request", id, method: "confirm", title: "ok?" },
});

/** Each item as its dialog id, else its offset, else its event type. */
const label = (items: StreamItem[]): string[] =>
  items.map((i) =>
    i.event.type === "extension_ui_request" ? String(i.event.id) : (i.offset ?? i.event.type),
  );

/**
 * Reads `n` items of `sub`, or what arrived within a second; `before` runs before each read (the
 * gateway's side answering new subscribes).
 */
async function take(sub: PiFleetSubscription, n: number, before?: () => void): Promise<StreamItem[]> {
  const out: StreamItem[] = [];
  const it = sub[Symbol.asyncIterator]();
  const timeout = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), 1000));
  while (out.length < n) {
    before?.();
    const r = await Promise.race([it.next(), timeout]);
    if (r === "timeout" || r.done) break;
    out.push(r.value);
  }
  return out;
}

describe("PiFleetSocket: a subscription re-opened on the same socket", () => {
  it("gets none of the closed subscription's in-flight events, and its own replay in full", async () => {
    const { socket, next } = harness();
    const ws = await next(1);
    ws.welcome("c1");
    await socket.ready();
    const old = socket.subscribe("p", "s", { after: "0" });
    await tick();
    ack(ws);
    ws.push(event("1-1"));
    ws.push(event("1-2"));
    expect((await take(old, 2)).map((i) => i.offset)).toEqual(["1-1", "1-2"]);
    old.close();
    expect(ws.sent.at(-1)).toEqual({ kind: "unsubscribe", projectId: "p", sessionId: "s" });

    const fresh = socket.subscribe("p", "s", { after: "0" });
    await tick();
    // Written by the gateway before it read the unsubscribe: the old subscription's.
    ws.push(event("1-3"));
    ws.push({
      kind: "event",
      projectId: "p",
      sessionId: "s",
      event: { type: "extension_ui_request", id: "d1" },
    });
    ws.push({ kind: "unsubscribed", projectId: "p", sessionId: "s" });
    ack(ws);
    for (const offset of ["1-1", "1-2", "1-3", "1-4"]) ws.push(event(offset));
    const items = await take(fresh, 4);
    // It used to get 1-3 and the dialog first, then drop 1-1 and 1-2 as "duplicates".
    expect(items.map((i) => i.offset)).toEqual(["1-1", "1-2", "1-3", "1-4"]);
    expect(fresh.offset).toBe("1-4");
    fresh.close();
    socket.close();
  });

  it("starts a live-only re-subscription where its own ack says, not at a stale in-flight offset", async () => {
    const { socket, next } = harness();
    const ws = await next(1);
    ws.welcome("c1");
    const old = socket.subscribe("p", "s", { after: "0" });
    await tick();
    const first = ack(ws);
    old.close();
    const fresh = socket.subscribe("p", "s");
    await tick();
    // The old subscription's in-flight event and its late `subscribed` ack, then the new ack.
    ws.push(event("2-0"));
    ws.push({ kind: "subscribed", id: first.id, projectId: "p", sessionId: "s", offset: "9-9" });
    ws.push({ kind: "unsubscribed", projectId: "p", sessionId: "s" });
    ack(ws, "3-0");
    expect(fresh.offset).toBe("3-0");
    ws.push(event("3-1"));
    expect((await take(fresh, 1)).map((i) => i.offset)).toEqual(["3-1"]);
    fresh.close();
    socket.close();
  });

  it("retries a subscribe the gateway refused because the closed one was still being set up", async () => {
    const { socket, next } = harness();
    const ws = await next(1);
    ws.welcome("c1");
    const old = socket.subscribe("p", "s", { after: "0" });
    await tick();
    old.close();
    const fresh = socket.subscribe("p", "s", { after: "0" });
    await tick();
    const refused = ws.frames("subscribe").at(-1)!;
    ws.push({ kind: "unsubscribed", projectId: "p", sessionId: "s" });
    ws.push({ kind: "error", id: refused.id, code: "PF_ERR_REQUEST_INVALID", error: "already subscribed" });
    await tick();
    expect(ws.frames("subscribe")).toHaveLength(3);
    ack(ws);
    ws.push(event("1-1"));
    expect((await take(fresh, 1)).map((i) => i.offset)).toEqual(["1-1"]);
    fresh.close();
    socket.close();
  });
});

describe("PiFleetSocket: a slow consumer", () => {
  it("is unsubscribed when its queue is full and resubscribed from its last queued offset once it drains", async () => {
    const { socket, next } = harness({ maxQueuedEvents: 16 });
    const ws = await next(1);
    ws.welcome("c1");
    const sub = socket.subscribe("p", "s", { after: "0" });
    await tick();
    ack(ws);
    for (let n = 1; n <= 40; n++) ws.push(event(`1-${n}`));
    // Sixteen queued, then the stream was paused on the gateway; the rest is dropped, not queued.
    expect(ws.sent.at(-1)).toEqual({ kind: "unsubscribe", projectId: "p", sessionId: "s" });
    expect(sub.offset).toBe("1-16");
    ws.push({ kind: "unsubscribed", projectId: "p", sessionId: "s" });
    ws.push(event("1-41")); // nothing is queued while paused
    expect(ws.frames("subscribe")).toHaveLength(1);

    const it = sub[Symbol.asyncIterator]();
    const got: (string | undefined)[] = [];
    for (let n = 0; n < 8; n++) got.push((await it.next()).value?.offset);
    // Drained to half the limit: subscribed again after what it holds.
    expect(ws.frames("subscribe").at(-1)).toMatchObject({ projectId: "p", sessionId: "s", after: "1-16" });

    // From here the gateway answers each subscribe with the stream after its cursor (up to 1-100)
    // at once, and the consumer reads one item per tick: it pauses and resumes as often as needed.
    const served = new Set<unknown>();
    const serve = () => {
      for (const f of ws.frames("subscribe")) {
        if (served.has(f.id) || f.id === ws.frames("subscribe")[0]!.id) continue;
        served.add(f.id);
        ack(ws);
        const from = Number(String(f.after).split("-")[1]);
        for (let n = from + 1; n <= 100; n++) ws.push(event(`1-${n}`));
      }
    };
    while (got.length < 100) {
      serve();
      got.push((await it.next()).value?.offset);
    }
    expect(got).toEqual(Array.from({ length: 100 }, (_, i) => `1-${i + 1}`));
    expect(ws.frames("unsubscribe").length, "paused more than once").toBeGreaterThan(2);
    sub.close();
    socket.close();
  });

  it("stays paused across a reconnect and resumes on the new connection once drained", async () => {
    const { socket, next } = harness({ maxQueuedEvents: 16 });
    const first = await next(1);
    first.welcome("c1");
    const sub = socket.subscribe("p", "s", { after: "0" });
    await tick();
    ack(first);
    for (let n = 1; n <= 17; n++) first.push(event(`1-${n}`));
    expect(first.frames("unsubscribe")).toHaveLength(1);
    first.drop(1001);
    const second = await next(2);
    second.welcome("c2");
    expect(second.frames("subscribe"), "not while the consumer is behind").toHaveLength(0);
    const it = sub[Symbol.asyncIterator]();
    for (let n = 1; n <= 7; n++) expect((await it.next()).value?.offset).toBe(`1-${n}`);
    expect(second.frames("subscribe"), "not before it is down to half").toHaveLength(0);
    expect((await it.next()).value?.offset).toBe("1-8");
    expect(second.frames("subscribe")).toMatchObject([{ after: "1-16" }]);
    ack(second);
    second.push(event("1-17"));
    for (let n = 9; n <= 17; n++) expect((await it.next()).value?.offset).toBe(`1-${n}`);
    sub.close();
    socket.close();
  });

  it("is not paused by the pending dialogs the gateway re-sends after each subscribe, nor shown them twice", async () => {
    const { socket, next } = harness({ maxQueuedEvents: 16 });
    const ws = await next(1);
    ws.welcome("c1");
    const sub = socket.subscribe("p", "s", { after: "0" });
    await tick();
    // Each subscribe: its ack, the stream after its cursor (up to `last`), then the session's
    // pending dialogs without an offset — d1 also in the stream, at 1-2 (as ws-connection.ts does).
    let last = 3;
    const served = new Set<unknown>();
    const serve = () => {
      for (const f of ws.frames("subscribe")) {
        if (served.has(f.id)) continue;
        served.add(f.id);
        ack(ws);
        const from = f.after === "0" ? 0 : Number(String(f.after).split("-")[1]);
        for (let n = from + 1; n <= last; n++) ws.push(n === 2 ? dialog("d1", "1-2") : event(`1-${n}`));
        for (let d = 1; d <= 20; d++) ws.push(dialog(`d${d}`));
      }
    };
    serve();
    const got = await take(sub, 22, serve);
    // 3 events and 20 dialogs queued: more than 16 items, only 3 with an offset. It used to pause,
    // and every resume brought the dialogs back: d1 d2 … again and again, a subscribe each time.
    expect(label(got)).toEqual(["1-1", "d1", "1-3", ...Array.from({ length: 19 }, (_, i) => `d${i + 2}`)]);
    await tick();
    expect(ws.frames("subscribe")).toHaveLength(1);
    expect(ws.frames("unsubscribe")).toHaveLength(0);

    // A burst of events pauses it; each resume is answered with the dialogs again: none repeats,
    // no event is lost, and the subscribes stop once the consumer has caught up.
    last = 60;
    for (let n = 4; n <= 60; n++) ws.push(event(`1-${n}`));
    const more = await take(sub, 57, serve);
    expect(label(more)).toEqual(Array.from({ length: 57 }, (_, i) => `1-${i + 4}`));
    await tick();
    serve();
    expect(sub.offset).toBe("1-60");
    const subscribes = ws.frames("subscribe").length;
    expect(subscribes).toBeGreaterThan(1);
    expect(subscribes).toBeLessThanOrEqual(1 + Math.ceil(57 / 8));
    // After a reconnect the dialogs come again: still not yielded twice.
    ws.drop(1001);
    const second = await next(2);
    second.welcome("c2");
    await tick();
    const resend = () => {
      for (const f of second.frames("subscribe")) {
        if (served.has(f.id)) continue;
        served.add(f.id);
        ack(second);
        second.push(event("1-61"));
        for (let d = 1; d <= 21; d++) second.push(dialog(`d${d}`));
      }
    };
    expect(label(await take(sub, 2, resend))).toEqual(["1-61", "d21"]);
    await tick();
    expect(second.frames("subscribe")).toHaveLength(1);
    sub.close();
    socket.close();
  });

  it("yields the pending dialogs again after a stream_reset (the consumer reloads)", async () => {
    const { socket, next } = harness();
    const ws = await next(1);
    ws.welcome("c1");
    const sub = socket.subscribe("p", "s", { after: "0" });
    await tick();
    ack(ws);
    ws.push(event("1-1"));
    ws.push(dialog("d1"));
    ws.push(dialog("d1"));
    ws.push({
      kind: "event",
      projectId: "p",
      sessionId: "s",
      event: { type: "stream_reset", reason: "lost" },
    });
    ws.push(dialog("d1"));
    ws.push(dialog("d1"));
    expect(label(await take(sub, 4))).toEqual(["1-1", "d1", "stream_reset", "d1"]);
    sub.close();
    socket.close();
  });

  it("refuses a maxQueuedEvents below 16 or not an integer", () => {
    for (const bad of [0, 1, 4, 15, 16.5, Number.NaN, -1]) {
      expect(() => harness({ maxQueuedEvents: bad })).toThrow(
        new PiFleetError(`maxQueuedEvents must be an integer of at least 16, or Infinity (got ${bad})`),
      );
    }
    for (const good of [16, 1000, Number.POSITIVE_INFINITY])
      harness({ maxQueuedEvents: good }).socket.close();
  });
});
