// Limits and HTTP policy in keyed mode on real gateways + Redis: the per-org request budget is
// shared by every gateway and answered with 429 + Retry-After; open streams are capped per key;
// a client that hangs up during the set-up gives its slot back; a revoked key loses its open SSE
// and WebSocket streams within about a second; security headers
// are set and CORS answers only the configured origins.
import { connect } from "node:net";
import { loadEnv } from "@pi-fleet/config";
import { type Gateway, startGateway } from "@pi-fleet/gateway";
import { createLogger } from "@pi-fleet/observability";
import { openSse, waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import WebSocket from "ws";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const ADMIN = "limits-operator-token-0123456789abcdef";
const RATE = 30;
let stack: InProcessStack;
let second: Gateway;

async function newOrgKey(org: string, role = "admin"): Promise<{ id: string; key: string }> {
  await stack.call("POST", "/v1/admin/orgs", { id: org }, ADMIN);
  const res = await stack.call("POST", `/v1/admin/orgs/${org}/keys`, { role }, ADMIN);
  expect(res.status).toBe(201);
  return res.json as { id: string; key: string };
}

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "limits", {
    env: {
      PI_FLEET_ADMIN_TOKEN: ADMIN,
      PI_FLEET_SECRET_KEY: "b".repeat(64),
      PI_FLEET_ORG_RATE_LIMIT: String(RATE),
      PI_FLEET_MAX_STREAMS_PER_KEY: "2",
      PI_FLEET_CORS_ORIGINS: "https://app.example.com",
    },
  });
  second = await startGateway(loadEnv(stack.env), createLogger("test", "warn"));
});

afterAll(async () => {
  await second?.close();
  await stack?.close();
});

describe("limits", () => {
  it("shares one request budget per org across gateways: 429 with Retry-After beyond it", async () => {
    const a = await newOrgKey("rate-a");
    const b = await newOrgKey("rate-b");
    const statuses: number[] = [];
    for (let i = 0; i < RATE; i++) {
      const url = i % 2 === 0 ? stack.gateway.url : second.url;
      const res = await fetch(`${url}/v1/projects`, { headers: { authorization: `Bearer ${a.key}` } });
      statuses.push(res.status);
    }
    expect(statuses.every((s) => s === 200)).toBe(true);
    const over = await fetch(`${second.url}/v1/projects`, { headers: { authorization: `Bearer ${a.key}` } });
    expect(over.status).toBe(429);
    expect(Number(over.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(((await over.json()) as { code: string }).code).toBe("PF_ERR_RATE_LIMITED");
    // Another org is not slowed down by the first one.
    const other = await stack.call("GET", "/v1/projects", undefined, b.key);
    expect(other.status).toBe(200);
    // Unauthenticated and public requests do not spend anyone's budget.
    expect((await fetch(`${stack.gateway.url}/v1/healthz`)).status).toBe(200);
  });

  it("counts /v1/ws subscribes against the same budget: PF_ERR_RATE_LIMITED beyond it", async () => {
    // Each subscribe / unsubscribe cycle costs about a dozen Redis commands; it was never counted.
    const k = await newOrgKey("rate-ws");
    const auth = { authorization: `Bearer ${k.key}` };
    const project = (await stack.call("POST", "/v1/projects", { name: "p" }, k.key)).json as { id: string };
    const ws = new WebSocket(`${second.url.replace("http", "ws")}/v1/ws`, { headers: auth });
    const frames: Record<string, unknown>[] = [];
    ws.on("message", (d) => frames.push(JSON.parse(String(d)) as Record<string, unknown>));
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    ws.send(JSON.stringify({ kind: "hello", protocol: 1 }));
    // Project creation and the upgrade spent 2 of RATE: RATE - 2 subscribes fit, the next does not.
    let refused: Record<string, unknown> | undefined;
    for (let i = 0; i < RATE && !refused; i++) {
      ws.send(JSON.stringify({ kind: "subscribe", id: `s${i}`, projectId: project.id }));
      const answer = await waitFor(() => frames.find((f) => f.id === `s${i}`));
      if (answer.kind === "error") refused = { ...answer, at: i };
      else {
        ws.send(JSON.stringify({ kind: "unsubscribe", id: `u${i}`, projectId: project.id }));
        await waitFor(() => frames.find((f) => f.id === `u${i}`));
      }
    }
    expect(refused).toMatchObject({ kind: "error", code: "PF_ERR_RATE_LIMITED", at: RATE - 2 });
    expect(String(refused?.error)).toMatch(/more than 30 requests per minute; retry in \d+ seconds/);
    // The wait as a field too (REST's Retry-After), in ms: what the client SDK waits.
    expect(refused?.retryAfterMs).toEqual(expect.any(Number));
    expect(refused?.retryAfterMs as number).toBeGreaterThan(0);
    expect(refused?.retryAfterMs as number).toBeLessThanOrEqual(60_000);
    // The same budget as REST, on any gateway; the socket stays open.
    expect((await stack.call("GET", "/v1/projects", undefined, k.key)).status).toBe(429);
    ws.send(JSON.stringify({ kind: "ping", id: "alive" }));
    await waitFor(() => frames.find((f) => f.kind === "pong"));
    ws.close();
  });

  it("caps open streams per key and cuts them when the key is revoked", async () => {
    const k = await newOrgKey("streams-a");
    const auth = { authorization: `Bearer ${k.key}` };
    const project = (await stack.call("POST", "/v1/projects", { name: "p" }, k.key)).json as { id: string };
    const url = `${stack.gateway.url}/v1/projects/${project.id}/events`;
    const s1 = await openSse(url, { headers: auth });
    const s2 = await openSse(url, { headers: auth });
    expect([s1.status, s2.status]).toEqual([200, 200]);
    const s3 = await openSse(url, { headers: auth });
    expect(s3.status).toBe(429);
    s3.close();

    // Another gateway has its own count; a WebSocket there stays open until the revocation.
    const ws = new WebSocket(`${second.url.replace("http", "ws")}/v1/ws`, { headers: auth });
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    const wsClosed = new Promise<number>((resolve) => ws.once("close", (code) => resolve(code)));

    const revoked = await stack.call("DELETE", `/v1/admin/orgs/streams-a/keys/${k.id}`, undefined, ADMIN);
    expect(revoked.status).toBe(200);
    const t0 = Date.now();
    await waitFor(() => s1.ended && s2.ended, { timeoutMs: 3000 });
    expect(await wsClosed).toBe(1008);
    expect(Date.now() - t0).toBeLessThan(2500);
  });

  it("gives back the stream slot of a client that hung up while its stream was being set up", async () => {
    // The client's socket closed during the auth and lookup reads, before the stream watched its
    // response: the slot and the hub listener were never given back (the key was locked out).
    const k = await newOrgKey("streams-b");
    const project = (await stack.call("POST", "/v1/projects", { name: "p" }, k.key)).json as { id: string };
    const { port } = new URL(stack.gateway.url);
    for (let i = 0; i < 6; i++) {
      const socket = connect(Number(port), "127.0.0.1");
      await new Promise((resolve) => socket.once("connect", resolve));
      socket.write(
        `GET /v1/projects/${project.id}/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${k.key}\r\n\r\n`,
      );
      socket.destroy();
    }
    // Once the gateway has handled the six requests, a new stream gets a slot (a leaked slot is
    // never given back: 429 for ever)...
    const url = `${stack.gateway.url}/v1/projects/${project.id}/events`;
    const s = await waitFor(
      async () => {
        const attempt = await openSse(url, { headers: { authorization: `Bearer ${k.key}` } });
        if (attempt.status === 200) return attempt;
        attempt.close();
        return undefined;
      },
      { timeoutMs: 3000, message: "a stream slot for the key" },
    );
    s.close();
    // ...and once that one closed too, nothing of the six is left in the hub.
    const { services } = stack.gateway;
    await waitFor(() => services.state.sseClients === 0 && services.hub.listenerCount === 0, {
      message: "every stream and hub listener given back",
    });
  });

  it("sets security headers and answers CORS only for configured origins", async () => {
    const res = await fetch(`${stack.gateway.url}/v1/healthz`);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("x-frame-options")).toBeTruthy();
    const allowed = await fetch(`${stack.gateway.url}/v1/projects`, {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example.com",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type",
      },
    });
    expect(allowed.status).toBeLessThan(300);
    expect(allowed.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    const denied = await fetch(`${stack.gateway.url}/v1/healthz`, {
      headers: { origin: "https://evil.example" },
    });
    expect(denied.headers.get("access-control-allow-origin")).toBeNull();
  });
});
