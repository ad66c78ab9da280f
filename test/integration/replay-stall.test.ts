// A client that asks for a whole stream (`after=0`) and then reads nothing is cut with
// `stream_lagging` after 10 s without progress, on SSE and on /v1/ws alike (the WebSocket replay
// used to wait for it for ever, holding the connection and its subscriptions). The stream is
// larger than loopback socket buffers absorb, so the replay must pause on backpressure.
import { connectRedis, createKeys } from "@pi-fleet/redis";
import { EventLog } from "@pi-fleet/streams";
import { waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { StalledSse, StalledWs } from "../e2e/streaming-support/raw-clients.ts";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

let stack: InProcessStack;
let session = "";

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "replay-stall", {
    env: { PI_FLEET_CLIENT_MAX_BUFFER_BYTES: String(64 * 1024) },
  });
  await stack.call("POST", "/v1/projects", { name: "stall" });
  session = ((await stack.call("POST", "/v1/projects/stall/sessions", {})).json as { id: string }).id;
  // ~12 MB of events, written through the product's EventLog.
  const redis = await connectRedis(inject("redisUrl"), "command", "test-replay-stall-fixture");
  try {
    const log = new EventLog(redis, createKeys(stack.prefix), 10_000);
    const text = "s".repeat(30_000);
    for (let b = 0; b < 4; b++) {
      const events = Array.from({ length: 100 }, (_, i) => ({
        event: { type: "message_update", n: b * 100 + i, text },
      }));
      await log.append({ org: "default", project: "stall", session }, "", events);
    }
  } finally {
    await redis.quit();
  }
});

afterAll(async () => {
  await stack?.close();
});

describe("replay of a client that stopped reading", () => {
  it("is cut with stream_lagging after 10 s without progress, on SSE and WebSocket", async () => {
    const { metrics, state, hub } = stack.gateway.services;
    const sse = await StalledSse.open(
      stack.gateway.url,
      `/v1/projects/stall/sessions/${session}/events?after=0`,
    );
    const ws = await StalledWs.open(stack.gateway.url, [
      { kind: "hello", protocol: 1 },
      { kind: "subscribe", projectId: "stall", sessionId: session, after: "0" },
    ]);
    try {
      await waitFor(() => metrics.lagging.sse >= 1 && metrics.lagging.ws >= 1, {
        timeoutMs: 20_000,
        message: "both stalled replays cut",
      });
      const wsEnd = await ws.drain();
      expect(wsEnd.closeCode).toBe(1013);
      const lagging = JSON.parse(wsEnd.texts.at(-1) ?? "{}") as {
        event?: { type?: string; lastOffset?: string };
      };
      expect(lagging.event?.type).toBe("stream_lagging");
      const sseEnd = await sse.drain();
      expect(sseEnd.complete).toBe(true);
      expect(JSON.parse(sseEnd.frames.at(-1)?.data ?? "{}")).toMatchObject({ type: "stream_lagging" });
      await waitFor(() => state.sseClients === 0 && hub.listenerCount === 0, { message: "nothing left" });
    } finally {
      sse.destroy();
      ws.destroy();
    }
  }, 30_000);
});
