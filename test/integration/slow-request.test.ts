// Slow-loris: a client that stops sending its request — headers or body — is answered 408 and
// disconnected within PI_FLEET_REQUEST_TIMEOUT_MS (+ the 1 s check interval), while a stream that
// has been open longer than that keeps going (the timeout covers receiving requests, not answers).
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const TIMEOUT_MS = 1000;
let stack: InProcessStack;

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "slowreq", {
    workerCount: 0,
    env: { PI_FLEET_REQUEST_TIMEOUT_MS: String(TIMEOUT_MS) },
  });
});

afterAll(async () => {
  await stack?.close();
});

/** Writes `head` on a raw socket and never finishes; resolves with what came back and when it closed. */
function stall(head: string): Promise<{ answer: string; closedAfterMs: number }> {
  const port = Number(new URL(stack.gateway.url).port);
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    let answer = "";
    const socket = connect(port, "127.0.0.1", () => socket.write(head));
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      answer += d;
    });
    socket.on("error", () => {});
    socket.on("close", () => resolve({ answer, closedAfterMs: Date.now() - t0 }));
    setTimeout(() => {
      socket.destroy();
      reject(new Error(`still open after 15 s; got ${JSON.stringify(answer.slice(0, 80))}`));
    }, 15_000);
  });
}

describe("a request that stops arriving", () => {
  it("is cut with 408 when its body stalls", async () => {
    const { answer, closedAfterMs } = await stall(
      "POST /v1/projects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n" +
        '{"name":',
    );
    expect(answer.split("\r\n")[0]).toBe("HTTP/1.1 408 Request Timeout");
    expect(closedAfterMs).toBeLessThan(TIMEOUT_MS + 3000);
  });

  it("is cut with 408 when its headers stall", async () => {
    const { answer, closedAfterMs } = await stall("GET /v1/healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    expect(answer.split("\r\n")[0]).toBe("HTTP/1.1 408 Request Timeout");
    expect(closedAfterMs).toBeLessThan(TIMEOUT_MS + 3000);
  });

  it("leaves an open stream alone", async () => {
    const project = (await stack.call("POST", "/v1/projects", { name: "slow" })).json as { id: string };
    const session = (await stack.call("POST", `/v1/projects/${project.id}/sessions`)).json as { id: string };
    const res = await fetch(`${stack.gateway.url}/v1/projects/${project.id}/sessions/${session.id}/events`);
    expect(res.status).toBe(200);
    const reader = res.body?.getReader();
    await reader?.read(); // the first frame
    await new Promise((r) => setTimeout(r, TIMEOUT_MS + 2500));
    const state = await stack.call("POST", `/v1/projects/${project.id}/sessions/${session.id}/abort`, {});
    expect(state.status).toBe(200);
    // Still open: the abort of an idle session wrote nothing, but the stream was not cut.
    const next = await Promise.race([
      reader?.read().then((r) => (r?.done ? "ended" : "data")),
      new Promise((r) => setTimeout(() => r("open"), 300)),
    ]);
    expect(next).not.toBe("ended");
    await reader?.cancel();
  });
});
