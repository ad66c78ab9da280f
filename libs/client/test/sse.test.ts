// Unit tests of the client's resume logic against a scripted fetch: offsets order, backoff bounds,
// immediate reconnect after `stream_lagging`, duplicate filtering on overlapping replays,
// `stream_reset` restarting the cursor, retryable vs final statuses and the idle timeout.
import { describe, expect, it } from "vitest";
import {
  compareOffsets,
  createPiFleetClient,
  PiFleetApiError,
  type ReconnectInfo,
  type StreamItem,
} from "../src/index.ts";
import { backoffDelay } from "../src/resume.ts";

/** One scripted answer: SSE frames (then end, or hang open), or an error status. */
type Script =
  | { frames: string[]; hang?: boolean }
  | { status: number; body?: unknown; headers?: Record<string, string> };

function scriptedFetch(scripts: Script[]) {
  const calls: { url: string; headers: Record<string, string>; signal: AbortSignal }[] = [];
  const fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const signal = init?.signal ?? new AbortController().signal;
    calls.push({ url: String(input), headers: { ...(init?.headers as Record<string, string>) }, signal });
    const script = scripts.shift();
    if (!script) throw new TypeError("fetch failed: no more scripts");
    if ("status" in script) {
      return new Response(JSON.stringify(script.body ?? {}), {
        status: script.status,
        headers: script.headers,
      });
    }
    const encoder = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const f of script.frames) controller.enqueue(encoder.encode(f));
        if (!script.hang) controller.close();
        signal.addEventListener("abort", () => controller.error(signal.reason));
      },
    });
    return new Response(body, { status: 200, headers: { "content-type": "text/event-stream" } });
  };
  return { fetch: fetch as typeof globalThis.fetch, calls };
}

const frame = (id: string | undefined, event: object) =>
  `${id === undefined ? "" : `id: ${id}\n`}data: ${JSON.stringify(event)}\n\n`;

async function take(items: AsyncIterable<StreamItem>, n: number): Promise<StreamItem[]> {
  const out: StreamItem[] = [];
  if (n === 0) return out;
  for await (const item of items) {
    out.push(item);
    if (out.length === n) break;
  }
  return out;
}

describe("resume helpers", () => {
  it("orders offsets numerically", () => {
    expect(compareOffsets("9-0", "10-0")).toBeLessThan(0);
    expect(compareOffsets("10-2", "10-10")).toBeLessThan(0);
    expect(compareOffsets("0", "0-1")).toBeLessThan(0);
    expect(compareOffsets("5-5", "5-5")).toBe(0);
    expect(compareOffsets("1732212345678-1", "999-0")).toBeGreaterThan(0);
  });

  it("backs off exponentially with jitter, capped", () => {
    const opts = { initialDelayMs: 100, maxDelayMs: 1000 };
    expect(backoffDelay(0, opts, () => 0)).toBe(50);
    expect(backoffDelay(0, opts, () => 1)).toBe(100);
    expect(backoffDelay(3, opts, () => 1)).toBe(800);
    expect(backoffDelay(10, opts, () => 1)).toBe(1000);
    expect(backoffDelay(10, opts, () => 0)).toBe(500);
  });
});

describe("events()", () => {
  it("reconnects at once after stream_lagging and drops replayed duplicates", async () => {
    const { fetch, calls } = scriptedFetch([
      {
        frames: [
          ": heartbeat\n\n",
          frame("1-1", { type: "a" }),
          frame("1-2", { type: "b" }),
          frame(undefined, { type: "stream_lagging", lastOffset: "1-2" }),
        ],
        hang: true,
      },
      { frames: [frame("1-1", { type: "a" }), frame("1-2", { type: "b" }), frame("1-3", { type: "c" })] },
    ]);
    const reconnects: ReconnectInfo[] = [];
    const client = createPiFleetClient({ baseUrl: "http://gw.test/", apiKey: "k", fetch });
    const items = await take(
      client.events("p", "s", { after: "0", onReconnect: (r) => reconnects.push(r) }),
      3,
    );
    expect(items).toEqual([
      { offset: "1-1", event: { type: "a" } },
      { offset: "1-2", event: { type: "b" } },
      { offset: "1-3", event: { type: "c" } },
    ]);
    expect(calls.map((c) => c.url)).toEqual([
      "http://gw.test/v1/projects/p/sessions/s/events",
      "http://gw.test/v1/projects/p/sessions/s/events",
    ]);
    expect(calls.map((c) => c.headers["last-event-id"])).toEqual(["0", "1-2"]);
    expect(calls[0]?.headers.authorization).toBe("Bearer k");
    expect(calls[0]?.signal.aborted).toBe(true);
    expect(reconnects).toMatchObject([{ reason: "lagging", delayMs: 0, cursor: "1-2" }]);
  });

  it("a live-only stream resumes from where the gateway said it started", async () => {
    // The gateway's first frame names the start (`id:` without data); a disconnect before the
    // first event used to reconnect live only, missing what was written meanwhile.
    const { fetch, calls } = scriptedFetch([
      { frames: ["retry: 1000\nid: 7-3\n\n"] },
      { frames: [frame("7-4", { type: "a" })] },
    ]);
    const client = createPiFleetClient({ baseUrl: "http://gw.test", fetch });
    const items = await take(client.events("p", "s", { reconnect: { initialDelayMs: 1 } }), 1);
    expect(items).toEqual([{ offset: "7-4", event: { type: "a" } }]);
    expect(calls.map((c) => c.headers["last-event-id"])).toEqual([undefined, "7-3"]);
  });

  it("keeps the start offset when id-less frames arrive in the same chunk", async () => {
    // A session with a pending dialog: the gateway re-sends it, without an id, right after the
    // first frame; both in one read used to drop the start offset.
    const dialog = { type: "extension_ui_request", id: "d1", method: "confirm", title: "ok?" };
    const { fetch, calls } = scriptedFetch([
      { frames: [`retry: 1000\nid: 7-3\n\ndata: ${JSON.stringify(dialog)}\n\n`] },
      { frames: [frame("7-4", { type: "a" })] },
    ]);
    const client = createPiFleetClient({ baseUrl: "http://gw.test", fetch });
    const items = await take(client.events("p", "s", { reconnect: { initialDelayMs: 1 } }), 2);
    expect(items.map((i) => i.offset)).toEqual([undefined, "7-4"]);
    expect(calls.map((c) => c.headers["last-event-id"])).toEqual([undefined, "7-3"]);
  });

  it("refuses ids that URL parsing would resolve away", async () => {
    const client = createPiFleetClient({ baseUrl: "http://gw.test", fetch: scriptedFetch([]).fetch });
    expect(() => client.events("p", "..")).toThrow(/invalid id/);
    await expect(
      client.api.GET("/v1/projects/{projectId}/sessions/{id}/state", {
        params: { path: { projectId: "p", id: "." } },
      }),
    ).rejects.toThrow(/invalid id/);
  });

  it("yields stream_reset and accepts the lower offsets that follow it", async () => {
    const { fetch, calls } = scriptedFetch([
      { frames: [frame(undefined, { type: "stream_reset", reason: "lost", firstOffset: "1-1" })] },
      { frames: [frame("1-1", { type: "a" })] },
    ]);
    const client = createPiFleetClient({ baseUrl: "http://gw.test", fetch });
    const items = await take(client.events("p", "s", { after: "5-0", reconnect: { initialDelayMs: 1 } }), 2);
    expect(items).toEqual([
      { event: { type: "stream_reset", reason: "lost", firstOffset: "1-1" } },
      { offset: "1-1", event: { type: "a" } },
    ]);
    expect(calls.map((c) => c.headers["last-event-id"])).toEqual(["5-0", "0"]);
  });

  it("retries 503 (honouring Retry-After) and network errors, and throws on 404", async () => {
    const { fetch, calls } = scriptedFetch([
      {
        status: 503,
        body: { error: "draining", code: "PF_ERR_SERVICE_UNAVAILABLE" },
        headers: { "retry-after": "0" },
      },
      { frames: [frame("2-0", { type: "x" })] },
      { status: 404, body: { error: "unknown session", code: "PF_ERR_SESSION_NOT_FOUND" } },
    ]);
    const reconnects: ReconnectInfo[] = [];
    const client = createPiFleetClient({ baseUrl: "http://gw.test", fetch });
    const seen: StreamItem[] = [];
    const run = (async () => {
      for await (const item of client.events("p", "s", {
        reconnect: { initialDelayMs: 1 },
        onReconnect: (r) => reconnects.push(r),
      }))
        seen.push(item);
    })();
    await expect(run).rejects.toBeInstanceOf(PiFleetApiError);
    await expect(run).rejects.toMatchObject({ status: 404, code: "PF_ERR_SESSION_NOT_FOUND" });
    expect(seen).toEqual([{ offset: "2-0", event: { type: "x" } }]);
    expect(calls.map((c) => c.headers["last-event-id"])).toEqual([undefined, undefined, "2-0"]);
    expect(reconnects.map((r) => r.reason)).toEqual(["status", "closed"]);
    expect(reconnects[0]?.error).toBeInstanceOf(PiFleetApiError);
  });

  it("reconnects when the stream goes idle, and stops when the signal aborts", async () => {
    const { fetch, calls } = scriptedFetch([
      { frames: [], hang: true },
      { frames: [frame("3-0", { type: "x" })], hang: true },
    ]);
    const reconnects: ReconnectInfo[] = [];
    const abort = new AbortController();
    const client = createPiFleetClient({ baseUrl: "http://gw.test", fetch });
    const seen: StreamItem[] = [];
    for await (const item of client.events("p", "s", {
      idleTimeoutMs: 50,
      reconnect: { initialDelayMs: 1 },
      signal: abort.signal,
      onReconnect: (r) => reconnects.push(r),
    })) {
      seen.push(item);
      abort.abort();
    }
    expect(seen).toEqual([{ offset: "3-0", event: { type: "x" } }]);
    expect(reconnects.map((r) => r.reason)).toEqual(["idle"]);
    expect(calls).toHaveLength(2);
    expect(calls[1]?.signal.aborted).toBe(true);
  });
});
