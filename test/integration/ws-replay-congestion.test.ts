// A `/v1/ws` replay whose client stops reading waits for the socket to drain without polling:
// it polled every 10 ms per stalled subscription (a new timer each time: ~100 a second per client,
// so thousands of stalled clients kept a gateway core busy). Now one wait per connection looks at
// the socket less and less often while nothing is taken, down to every STALLED_CHECK_MS
// (drain-wait.ts). A client that reads again still gets the whole replay, in order.
import { createHook } from "node:async_hooks";
import { waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import WebSocket from "ws";
import { STALLED_CHECK_MS } from "../../apps/gateway/src/drain-wait.ts";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const EVENTS = 4000;
const CLIENTS = 10;
let stack: InProcessStack;
let session = "";

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "ws-congestion", {
    workerCount: 0,
    env: { PI_FLEET_STREAM_MAXLEN: "100000", PI_FLEET_MAX_STREAMS_PER_KEY: "1000" },
  });
  await stack.call("POST", "/v1/projects", { name: "congested" });
  session = ((await stack.call("POST", "/v1/projects/congested/sessions", {})).json as { id: string }).id;
  // 16 MB of history: more than the kernel's socket buffers take, so the replay backs up.
  const pad = "y".repeat(4000);
  const ref = { org: "default", project: "congested", session };
  for (let i = 0; i < EVENTS; i += 200) {
    const batch = Array.from({ length: 200 }, (_, k) => ({
      event: { type: "message_update", n: i + k, pad } as never,
    }));
    await stack.gateway.services.events.append(ref, "", batch);
  }
});

afterAll(async () => {
  await stack?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Timers created in this process (gateway included) during `ms`, per second. */
async function timersPerSecond(ms: number): Promise<number> {
  let n = 0;
  const hook = createHook({
    init(_id, type) {
      if (type === "Timeout") n++;
    },
  }).enable();
  await sleep(ms);
  hook.disable();
  return (n * 1000) / ms;
}

describe("a replay whose client stops reading", () => {
  it("waits without polling, and resumes in full once the client reads", async () => {
    const baseline = await timersPerSecond(1000);
    const clients = await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        const ws = new WebSocket(`${stack.gateway.url.replace("http", "ws")}/v1/ws`);
        const offsets: number[] = [];
        ws.on("message", (d) => {
          const f = JSON.parse(String(d)) as { kind: string; event?: { n?: number } };
          if (f.kind === "event" && typeof f.event?.n === "number") offsets.push(f.event.n);
        });
        await new Promise((resolve, reject) => {
          ws.once("open", resolve);
          ws.once("error", reject);
        });
        ws.send(JSON.stringify({ kind: "hello", protocol: 1 }));
        ws.send(
          JSON.stringify({ kind: "subscribe", projectId: "congested", sessionId: session, after: "0" }),
        );
        ws.pause(); // stops reading: the gateway's buffers fill, the replay waits
        return { ws, offsets };
      }),
    );
    await sleep(1500); // every replay is backed up by now
    const stalled = await timersPerSecond(2000);
    // Before: ~100 new timers a second per stalled client. Now: at most the connection's check.
    expect(stalled - baseline).toBeLessThan(CLIENTS * (1000 / STALLED_CHECK_MS + 5));
    for (const c of clients) c.ws.resume();
    await waitFor(() => clients.every((c) => c.offsets.length === EVENTS), {
      timeoutMs: 20_000,
      message: "every replay complete",
    });
    for (const c of clients) {
      expect(c.offsets.every((n, i) => n === i)).toBe(true);
      c.ws.close();
    }
  });
});
