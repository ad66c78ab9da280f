// PiFleetSocket subscriptions against scripted in-memory sockets: a subscription closed and
// re-opened on the same socket never receives what the closed one had in flight (event frames
// name the stream, not the subscription: only those after the new subscription's own
// `subscribed` ack are its own), a subscribe refused because the gateway was still setting up the
// closed one is retried, and a consumer that falls behind is unsubscribed and resubscribed from
// its last queued offset instead of queueing without bound.
import { describe, expect, it } from "vitest";
import type { PiFleetSubscription, StreamItem } from "../src/index.ts";
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

/** Reads `n` items of `sub`, or what arrived within a second. */
async function take(sub: PiFleetSubscription, n: number): Promise<StreamItem[]> {
  const out: StreamItem[] = [];
  const it = sub[Symbol.asyncIterator]();
  const timeout = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), 1000));
  while (out.length < n) {
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
    const { socket, next } = harness({ maxQueuedEvents: 4 });
    const ws = await next(1);
    ws.welcome("c1");
    const sub = socket.subscribe("p", "s", { after: "0" });
    await tick();
    ack(ws);
    for (let n = 1; n <= 10; n++) ws.push(event(`1-${n}`));
    // Four queued, then the stream was paused on the gateway; the rest is dropped, not queued.
    expect(ws.sent.at(-1)).toEqual({ kind: "unsubscribe", projectId: "p", sessionId: "s" });
    expect(sub.offset).toBe("1-4");
    ws.push({ kind: "unsubscribed", projectId: "p", sessionId: "s" });
    ws.push(event("1-11")); // nothing is queued while paused
    expect(ws.frames("subscribe")).toHaveLength(1);

    const it = sub[Symbol.asyncIterator]();
    const got: (string | undefined)[] = [];
    for (let n = 0; n < 2; n++) got.push((await it.next()).value?.offset);
    // Drained to half the limit: subscribed again after what it holds.
    expect(ws.frames("subscribe").at(-1)).toMatchObject({ projectId: "p", sessionId: "s", after: "1-4" });

    // From here the gateway answers each subscribe with the stream after its cursor (up to 1-30)
    // at once, and the consumer reads one item per tick: it pauses and resumes as often as needed.
    const served = new Set<unknown>();
    const serve = () => {
      for (const f of ws.frames("subscribe")) {
        if (served.has(f.id) || f.id === ws.frames("subscribe")[0]!.id) continue;
        served.add(f.id);
        ack(ws);
        const from = Number(String(f.after).split("-")[1]);
        for (let n = from + 1; n <= 30; n++) ws.push(event(`1-${n}`));
      }
    };
    while (got.length < 30) {
      serve();
      got.push((await it.next()).value?.offset);
    }
    expect(got).toEqual(Array.from({ length: 30 }, (_, i) => `1-${i + 1}`));
    expect(ws.frames("unsubscribe").length, "paused more than once").toBeGreaterThan(2);
    sub.close();
    socket.close();
  });

  it("stays paused across a reconnect and resumes on the new connection once drained", async () => {
    const { socket, next } = harness({ maxQueuedEvents: 2 });
    const first = await next(1);
    first.welcome("c1");
    const sub = socket.subscribe("p", "s", { after: "0" });
    await tick();
    ack(first);
    for (let n = 1; n <= 3; n++) first.push(event(`1-${n}`));
    expect(first.frames("unsubscribe")).toHaveLength(1);
    first.drop(1001);
    const second = await next(2);
    second.welcome("c2");
    expect(second.frames("subscribe"), "not while the consumer is behind").toHaveLength(0);
    const it = sub[Symbol.asyncIterator]();
    expect((await it.next()).value?.offset).toBe("1-1");
    expect(second.frames("subscribe")).toMatchObject([{ after: "1-2" }]);
    ack(second);
    second.push(event("1-3"));
    expect((await it.next()).value?.offset).toBe("1-2");
    expect((await it.next()).value?.offset).toBe("1-3");
    sub.close();
    socket.close();
  });
});
