// Unit tests of PiFleetSocket against scripted in-memory sockets: hello before anything else,
// resubscription from the last offset after a close, duplicate filtering, prompt re-sent with the
// same idempotency key, unsafe requests rejected on disconnect, immediate reconnect after
// `stream_lagging`, and the keepalive timeout.
import { describe, expect, it } from "vitest";
import type { StreamItem } from "../src/index.ts";
import { harness, tick } from "./fake-socket.ts";

describe("PiFleetSocket", () => {
  it("says hello first, resubscribes from the last offset and drops duplicates", async () => {
    const { socket, next, reconnects } = harness();
    const first = await next(1);
    expect(first.url).toBe("wss://gw.test/v1/ws");
    expect(first.headers).toEqual({ authorization: "Bearer key" });
    const sub = socket.subscribe("p", "s", { after: "0" });
    first.welcome("c1");
    expect(await socket.ready()).toEqual({ protocol: 1, connectionId: "c1" });
    expect(first.sent.map((f) => f.kind)).toEqual(["hello", "subscribe"]);
    expect(first.sent[1]).toMatchObject({ projectId: "p", sessionId: "s", after: "0" });

    const items: StreamItem[] = [];
    const reading = (async () => {
      for await (const item of sub) items.push(item);
    })();
    first.push({ kind: "subscribed", id: first.sent[1]!.id, projectId: "p", sessionId: "s" });
    first.push({ kind: "event", projectId: "p", sessionId: "s", offset: "1-1", event: { type: "a" } });
    first.push({ kind: "event", projectId: "p", sessionId: "s", offset: "1-2", event: { type: "b" } });
    first.push({ kind: "event", projectId: "other", sessionId: "s", offset: "1-3", event: { type: "x" } });
    first.drop(1001);

    const second = await next(2);
    second.welcome("c2");
    expect(second.sent[1]).toMatchObject({ kind: "subscribe", projectId: "p", sessionId: "s", after: "1-2" });
    second.push({ kind: "subscribed", id: second.sent[1]!.id, projectId: "p", sessionId: "s" });
    second.push({ kind: "event", projectId: "p", sessionId: "s", offset: "1-2", event: { type: "b" } });
    second.push({ kind: "event", projectId: "p", sessionId: "s", offset: "1-3", event: { type: "c" } });
    await tick();
    expect(socket.connectionId).toBe("c2");
    expect(sub.offset).toBe("1-3");
    sub.close();
    await reading;
    expect(items.map((i) => i.offset)).toEqual(["1-1", "1-2", "1-3"]);
    expect(second.sent.at(-1)).toEqual({ kind: "unsubscribe", projectId: "p", sessionId: "s" });
    expect(reconnects).toMatchObject([{ reason: "closed", attempt: 0 }]);
    socket.close();
  });

  it("resubscribes a live-only subscription from the offset its ack named", async () => {
    const { socket, next } = harness();
    const first = await next(1);
    const sub = socket.subscribe("p", "s");
    first.welcome("c1");
    await socket.ready();
    expect(first.sent[1]).toMatchObject({ kind: "subscribe", projectId: "p", sessionId: "s" });
    expect(first.sent[1]).not.toHaveProperty("after");
    first.push({ kind: "subscribed", id: first.sent[1]!.id, projectId: "p", sessionId: "s", offset: "4-2" });
    first.drop(1001);
    const second = await next(2);
    second.welcome("c2");
    await tick();
    // It used to resubscribe live only, missing what was written while it was away.
    expect(second.sent[1]).toMatchObject({ kind: "subscribe", projectId: "p", sessionId: "s", after: "4-2" });
    sub.close();
    socket.close();
  });

  it("re-sends prompt with the same idempotency key and rejects unsafe requests on disconnect", async () => {
    const { socket, next } = harness();
    const first = await next(1);
    first.welcome("c1");
    await socket.ready();
    const prompt = socket.request("prompt", { projectId: "p", sessionId: "s", text: "hi" });
    const steer = socket.request("steer", { projectId: "p", sessionId: "s", text: "go" });
    const promptFrame = first.sent[1]!;
    const steerFrame = first.sent[2]!;
    expect(promptFrame).toMatchObject({ kind: "request", method: "prompt", params: { text: "hi" } });
    const key = (promptFrame.params as { idempotencyKey?: string }).idempotencyKey;
    expect(key).toEqual(expect.any(String));
    first.drop(1006);
    await expect(steer).rejects.toMatchObject({ name: "PiFleetSocketError", code: "PF_CLIENT_DISCONNECTED" });

    const second = await next(2);
    second.welcome("c2");
    const resent = second.sent[1]!;
    expect(resent).toMatchObject({ method: "prompt", params: { idempotencyKey: key } });
    second.push({
      kind: "response",
      id: resent.id,
      ok: true,
      result: { ok: true, runId: "r1", offset: "1-0", position: 0 },
    });
    expect((await prompt).runId).toBe("r1");
    expect(steerFrame.id).not.toBe(resent.id);

    const failing = socket.request("abort", { projectId: "p", sessionId: "s" });
    const abortFrame = second.sent.at(-1)!;
    second.push({
      kind: "response",
      id: abortFrame.id,
      ok: false,
      status: 404,
      error: { error: "unknown session", code: "PF_ERR_SESSION_NOT_FOUND" },
    });
    await expect(failing).rejects.toMatchObject({
      name: "PiFleetApiError",
      status: 404,
      code: "PF_ERR_SESSION_NOT_FOUND",
    });

    const pending = socket.request("state", { projectId: "p", sessionId: "s" });
    socket.close();
    await expect(pending).rejects.toMatchObject({ code: "PF_CLIENT_CLOSED" });
    expect(second.closedWith).toBe(1000);
  });

  it("reconnects at once after stream_lagging and fails a rejected subscription", async () => {
    const { socket, next, reconnects } = harness();
    const first = await next(1);
    first.welcome("c1");
    const sub = socket.subscribe("p");
    await tick();
    first.push({ kind: "event", projectId: "p", event: { type: "stream_lagging" } });
    first.drop(1013);
    expect(reconnects).toMatchObject([{ reason: "lagging", delayMs: 0 }]);
    const second = await next(2);
    second.welcome("c2");
    const subscribe = second.sent[1]!;
    expect(subscribe).toMatchObject({ kind: "subscribe", projectId: "p" });
    expect(subscribe).not.toHaveProperty("after");
    second.push({ kind: "error", id: subscribe.id, code: "PF_ERR_PROJECT_NOT_FOUND", error: "unknown" });
    const iterate = async () => {
      for await (const _ of sub) {
        // nothing arrives
      }
    };
    await expect(iterate()).rejects.toMatchObject({ code: "PF_ERR_PROJECT_NOT_FOUND" });
    // The failed subscription is gone: the same stream can be subscribed again.
    expect(() => socket.subscribe("p")).not.toThrow();
    socket.close();
  });

  it("replaces a connection that stops answering pings", async () => {
    const { socket, next, reconnects } = harness({ pingIntervalMs: 10, pongTimeoutMs: 10 });
    const first = await next(1);
    first.welcome("c1");
    const second = await next(2);
    expect(first.sent.some((f) => f.kind === "ping")).toBe(true);
    expect(first.closedWith).toBe(4000);
    expect(reconnects[0]).toMatchObject({ reason: "idle" });
    second.welcome("c2");
    expect(await socket.ready()).toMatchObject({ connectionId: "c2" });
    socket.close();
  });

  it("fails what was in flight on 1009 instead of re-sending it, and backs off until a connection delivers", async () => {
    const { socket, next, reconnects, sockets } = harness();
    const first = await next(1);
    first.welcome("c1");
    await socket.ready();
    const prompt = socket.request("prompt", { projectId: "p", sessionId: "s", text: "x".repeat(100) });
    first.drop(1009);
    await expect(prompt).rejects.toMatchObject({ code: "PF_CLIENT_FRAME_TOO_LARGE" });
    // Connections closed right after their welcome: the backoff grows (it used to restart at 0).
    for (let n = 2; n <= 4; n++) {
      const s = await next(n);
      s.welcome(`c${n}`);
      expect(
        s.sent.filter((f) => f.kind === "request"),
        "nothing re-sent",
      ).toEqual([]);
      s.drop(1011);
    }
    expect(reconnects.map((r) => r.attempt)).toEqual([0, 1, 2, 3]);
    // A connection that delivers (an answer) restarts it.
    const fifth = await next(5);
    fifth.welcome("c5");
    const state = socket.request("state", { projectId: "p", sessionId: "s" });
    fifth.push({ kind: "response", id: fifth.sent.at(-1)?.id, ok: true, result: { status: "idle" } });
    await state;
    fifth.drop(1001);
    expect(reconnects.at(-1)).toMatchObject({ attempt: 0 });
    expect(sockets.length).toBeGreaterThanOrEqual(5);
    socket.close();
  });

  it("stops for good on 1008: subscriptions, requests and ready() fail, no reconnect", async () => {
    const { socket, next, sockets } = harness();
    const first = await next(1);
    const sub = socket.subscribe("p", "s");
    first.welcome("c1");
    await socket.ready();
    const pending = socket.request("state", { projectId: "p", sessionId: "s" });
    const iterate = async () => {
      for await (const _ of sub) {
        // nothing arrives
      }
    };
    const iterating = iterate();
    first.dispatchEvent(Object.assign(new Event("close"), { code: 1008, reason: "credential revoked" }));
    await expect(pending).rejects.toMatchObject({ code: "PF_CLIENT_REJECTED" });
    await expect(iterating).rejects.toMatchObject({ code: "PF_CLIENT_REJECTED" });
    await expect(socket.ready()).rejects.toMatchObject({ code: "PF_CLIENT_CLOSED" });
    await new Promise((r) => setTimeout(r, 30));
    expect(sockets).toHaveLength(1);
  });

  it("does not re-send a prompt that steers a running session, and retries a rate-limited subscribe", async () => {
    const { socket, next } = harness();
    const first = await next(1);
    first.welcome("c1");
    await socket.ready();
    const steer = socket.request("prompt", {
      projectId: "p",
      sessionId: "s",
      text: "go",
      streamingBehavior: "steer",
    });
    first.drop(1006);
    await expect(steer).rejects.toMatchObject({ code: "PF_CLIENT_DISCONNECTED" });

    const second = await next(2);
    second.welcome("c2");
    const sub = socket.subscribe("p", "s");
    await tick();
    const subscribe = second.sent.at(-1)!;
    expect(subscribe).toMatchObject({ kind: "subscribe" });
    second.push({ kind: "error", id: subscribe.id, code: "PF_ERR_RATE_LIMITED", error: "at most 3" });
    await tick();
    const again = second.sent.filter((f) => f.kind === "subscribe");
    expect(again.length, "subscribed again after the backoff").toBe(2);
    sub.close();
    socket.close();
  });

  it("waits the retryAfterMs a rate-limited subscribe names before subscribing again", async () => {
    const { socket, next } = harness();
    const ws = await next(1);
    ws.welcome("c1");
    await socket.ready();
    const sub = socket.subscribe("p", "s");
    await tick();
    const subscribe = ws.sent.at(-1)!;
    ws.push({
      kind: "error",
      id: subscribe.id,
      code: "PF_ERR_RATE_LIMITED",
      error: "retry in 1 seconds",
      retryAfterMs: 150,
    });
    await new Promise((r) => setTimeout(r, 60));
    expect(
      ws.sent.filter((f) => f.kind === "subscribe"),
      "not before the wait",
    ).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 150));
    expect(
      ws.sent.filter((f) => f.kind === "subscribe"),
      "after it",
    ).toHaveLength(2);
    sub.close();
    socket.close();
  });
});
