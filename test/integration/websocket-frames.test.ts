// Frame limits of `/v1/ws` match the REST routes its requests stand for: a prompt request carrying
// images, larger than PI_FLEET_MAX_BODY_BYTES but within the prompt route's body limit, is queued
// as over REST (it closed the socket with 1009 when /v1/ws was capped at the plain body limit); a
// request over the route's limit gets the route's 413 in its response; only a frame beyond the
// prompt limit plus the frame envelope closes the socket with 1009.
import { waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { FRAME_ENVELOPE_BYTES } from "../../apps/gateway/src/ws/websocket-plugin.ts";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";
import { connectWs } from "./helpers/ws-client.ts";

const MAX_BODY = 2048;
const MAX_IMAGE = 4096;
let stack: InProcessStack;
let session = "";

/** An open socket past hello / welcome. */
async function connect(url: string) {
  const client = await connectWs(url);
  client.send({ kind: "hello", protocol: 1 });
  await waitFor(() => client.frames.find((f) => f.kind === "welcome"));
  return client;
}

/** An image of `bytes` decoded bytes (the gateway checks base64 and size, not pixels). */
const image = (bytes: number) => ({ data: Buffer.alloc(bytes, 7).toString("base64"), mimeType: "image/png" });

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "websocket-frames", {
    env: {
      PI_FLEET_MAX_BODY_BYTES: String(MAX_BODY),
      PI_FLEET_MAX_IMAGE_BYTES: String(MAX_IMAGE),
      PI_FLEET_MAX_IMAGES: "2",
    },
  });
  await stack.call("POST", "/v1/projects", { name: "frames" });
  session = ((await stack.call("POST", "/v1/projects/frames/sessions", {})).json as { id: string }).id;
});

afterAll(async () => {
  await stack?.close();
});

describe("/v1/ws frame limits", () => {
  it("queues a prompt with images larger than the plain body limit, as REST does", async () => {
    const { ws, frames } = await connect(stack.gateway.url);
    const params = {
      projectId: "frames",
      sessionId: session,
      text: "[[reply:seen]]",
      images: [image(MAX_IMAGE)],
    };
    const frame = JSON.stringify({ kind: "request", id: 1, method: "prompt", params });
    expect(frame.length).toBeGreaterThan(MAX_BODY);
    ws.send(frame);
    const response = await waitFor(() => frames.find((f) => f.kind === "response" && f.id === 1));
    expect(response).toMatchObject({ ok: true });
    const runId = (response.result as { runId: string }).runId;
    const run = async () =>
      (await stack.call("GET", `/v1/projects/frames/sessions/${session}/runs/${runId}`)).json as {
        status: string;
      };
    await waitFor(async () => (await run()).status === "finished", { timeoutMs: 15_000 });
    ws.close();
  });

  it("refuses a frame nested too deep with an error frame; socket and gateway stay up", async () => {
    // 20 KB of nested arrays: JSON.parse takes it, but JSON.stringify of it (forwarding the
    // request to its route) overflowed the stack and the unhandled rejection stopped the gateway.
    const { ws, frames } = await connect(stack.gateway.url);
    const deep = `${"[".repeat(10_000)}${"]".repeat(10_000)}`;
    ws.send(
      `{"kind":"request","id":"deep","method":"prompt","params":{"projectId":"frames","sessionId":"${session}","text":${deep}}}`,
    );
    const refused = await waitFor(() =>
      frames.find((f) => f.kind === "error" && f.code === "PF_ERR_REQUEST_INVALID"),
    );
    expect(refused.error).toContain("nested deeper than 64 levels");
    ws.send(JSON.stringify({ kind: "ping", id: "still-open" }));
    await waitFor(() => frames.find((f) => f.kind === "pong" && f.id === "still-open"));
    expect((await stack.call("GET", "/v1/readyz")).status).toBe(200);
    // REST refuses such nesting as bad input (100 levels: within this stack's body limit).
    const rest = await fetch(`${stack.gateway.url}/v1/projects`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: `{"name":${"[".repeat(100)}${"]".repeat(100)}}`,
    });
    expect(rest.status).toBe(400);
    expect(await rest.json()).toMatchObject({
      code: "PF_ERR_REQUEST_INVALID",
      error: "JSON nested deeper than 64 levels",
    });
    ws.close();
  });

  it("answers a request over the route's limit with its 413 and closes only beyond the envelope", async () => {
    const { ws, frames, closed } = await connect(stack.gateway.url);
    // Three images where two are allowed, each at the size limit: the prompt route refuses it.
    const images = [image(MAX_IMAGE), image(MAX_IMAGE), image(MAX_IMAGE)];
    const params = { projectId: "frames", sessionId: session, text: "x", images };
    ws.send(JSON.stringify({ kind: "request", id: 2, method: "prompt", params }));
    const refused = await waitFor(() => frames.find((f) => f.kind === "response" && f.id === 2));
    expect(refused).toMatchObject({ ok: false, status: 413 });
    expect(ws.readyState).toBe(WebSocket.OPEN);

    const promptLimit = MAX_BODY + 2 * (4 * Math.ceil(MAX_IMAGE / 3) + 128);
    ws.send("x".repeat(promptLimit + FRAME_ENVELOPE_BYTES + 1));
    expect((await closed).code).toBe(1009);
  });
});
