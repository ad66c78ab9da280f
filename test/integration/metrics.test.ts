// Observability on an in-process stack: Prometheus `/metrics` of the gateway (API port, and the
// unauthenticated PI_FLEET_METRICS_PORT listener) and of the worker (its probe port) after a run,
// with the documented series and sensible values; every log line written while a run executes
// carries its org, project, session and run ids; the read-only Bull Board is operator-only in
// keyed mode.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { createLogger } from "@pi-fleet/observability";
import { openSse, waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

/** The value of one sample of a text exposition (labels must all match), or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || !line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g))
      got[k as string] = v as string;
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function scrape(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  return { status: res.status, type: res.headers.get("content-type") ?? "", text: await res.text() };
}

const PROMPT_ROUTE = "/v1/projects/:projectId/sessions/:id/prompt";

describe("open mode", () => {
  let stack: InProcessStack;
  let template: string;
  let session = "";
  let runId = "";
  const lines: string[] = [];

  beforeAll(async () => {
    template = await mkdtemp(join(tmpdir(), "pf-metrics-template-"));
    await writeFile(join(template, "README.md"), "seeded\n");
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(...String(chunk).split("\n").filter(Boolean));
        done();
      },
    });
    stack = await startInProcessStack(inject("redisUrl"), "metrics", {
      env: { PI_FLEET_WORKER_PORT: "0", PI_FLEET_PROJECT_TEMPLATE_DIR: template },
      logger: createLogger("test", "debug", sink),
    });
    expect((await stack.call("POST", "/v1/projects", { name: "obs" })).status).toBe(200);
    session = ((await stack.call("POST", "/v1/projects/obs/sessions", {})).json as { id: string }).id;
  });

  afterAll(async () => {
    await stack?.close();
    await rm(template, { recursive: true, force: true });
  });

  it("counts a run, its timings, the SSE stream and the lease on both /metrics", async () => {
    const metricsUrl = `${stack.gateway.url}/metrics`;
    const sse = await openSse(`${stack.gateway.url}/v1/projects/obs/sessions/${session}/events?after=0`);
    expect(sse.status).toBe(200);
    await waitFor(async () => sample((await scrape(metricsUrl)).text, "pifleet_sse_connections") === 1);

    const res = await stack.call("POST", `/v1/projects/obs/sessions/${session}/prompt`, {
      text: "[[reply:observed]]",
    });
    expect(res.status).toBe(200);
    runId = (res.json as { runId: string }).runId;
    await sse.waitFor((e) => (e.json as { type?: string } | undefined)?.type === "run_finished", 20_000);
    // A control round trip to the owner (get_state runs on the owning worker).
    const cmd = await stack.call("POST", `/v1/projects/obs/sessions/${session}/commands`, {
      type: "get_state",
    });
    expect(cmd.status).toBe(200);

    const worker = await scrape(`${stack.workers[0]?.healthUrl}/metrics`);
    expect(worker.status).toBe(200);
    expect(worker.type).toContain("text/plain");
    const w = (name: string, labels?: Record<string, string>) => sample(worker.text, name, labels);
    expect(w("pifleet_runs_total", { state: "finished", component: "worker" })).toBeGreaterThanOrEqual(1);
    expect(w("pifleet_runs_total", { state: "failed" })).toBe(0);
    expect(w("pifleet_run_duration_seconds_count", { state: "finished" })).toBeGreaterThanOrEqual(1);
    expect(w("pifleet_run_duration_seconds_sum", { state: "finished" })).toBeGreaterThan(0);
    expect(w("pifleet_run_first_event_seconds_count")).toBeGreaterThanOrEqual(1);
    expect(w("pifleet_dispatch_latency_seconds_count")).toBeGreaterThanOrEqual(1);
    // Seconds between the gateway's stamp and run_started: positive, well under the test's time.
    const dispatch =
      (w("pifleet_dispatch_latency_seconds_sum") ?? -1) / (w("pifleet_dispatch_latency_seconds_count") ?? 1);
    expect(dispatch).toBeGreaterThanOrEqual(0);
    expect(dispatch).toBeLessThan(20);
    expect(w("pifleet_leases_held")).toBeGreaterThanOrEqual(1); // owned until the idle release (60 s)
    expect(w("pifleet_runs_running")).toBe(0);
    expect(w("pifleet_runs_pending")).toBe(0);
    expect(w("pifleet_failovers_total")).toBe(0);
    expect(w("pifleet_fencing_rejections_total", { op: "append" })).toBe(0);
    expect(w("pifleet_leases_lost_total", { reason: "deadline" })).toBe(0);
    expect(w("pifleet_redis_errors_total", { connection: "command" })).toBe(0);
    expect(w("process_cpu_user_seconds_total")).toBeGreaterThan(0);

    const gateway = await scrape(metricsUrl);
    expect(gateway.status).toBe(200);
    const g = (name: string, labels?: Record<string, string>) => sample(gateway.text, name, labels);
    const prompt = { method: "POST", route: PROMPT_ROUTE, status: "200" };
    expect(g("pifleet_http_request_duration_seconds_count", prompt)).toBeGreaterThanOrEqual(1);
    expect(
      g("pifleet_http_request_duration_seconds_bucket", { ...prompt, le: "+Inf" }),
    ).toBeGreaterThanOrEqual(1);
    // Route patterns, never URLs: no series names a session id.
    expect(gateway.text).not.toContain(session);
    expect(g("pifleet_sse_connections")).toBe(1);
    expect(g("pifleet_stream_frames_total", { transport: "sse" })).toBeGreaterThanOrEqual(3);
    expect(g("pifleet_stream_lagging_disconnects_total", { transport: "sse" })).toBe(0);
    expect(
      g("pifleet_control_round_trip_seconds_count", { type: "command", outcome: "reply" }),
    ).toBeGreaterThanOrEqual(1);
    expect(g("pifleet_dispatch_waiting")).toBe(0);
    expect(g("pifleet_runs_total", { state: "cancelled", component: "gateway" })).toBe(0);
    expect(g("pifleet_redis_errors_total", { connection: "hub" })).toBe(0);

    sse.close();
    await waitFor(async () => sample((await scrape(metricsUrl)).text, "pifleet_sse_connections") === 0);
  });

  it("tracks open WebSockets", async () => {
    const metricsUrl = `${stack.gateway.url}/metrics`;
    const ws = new WebSocket(`${stack.gateway.url.replace("http", "ws")}/v1/ws`);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener("open", () => resolve());
      ws.addEventListener("error", () => reject(new Error("websocket failed")));
    });
    await waitFor(async () => sample((await scrape(metricsUrl)).text, "pifleet_ws_connections") === 1);
    ws.close();
    await waitFor(async () => sample((await scrape(metricsUrl)).text, "pifleet_ws_connections") === 0);
  });

  it("tracks open pi RPC sockets apart from /v1/ws", async () => {
    const metricsUrl = `${stack.gateway.url}/metrics`;
    const url = `${stack.gateway.url.replace("http", "ws")}/v1/projects/obs/sessions/${session}/rpc`;
    const rpc = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      rpc.addEventListener("open", () => resolve());
      rpc.addEventListener("error", () => reject(new Error("rpc socket failed")));
    });
    await waitFor(async () => sample((await scrape(metricsUrl)).text, "pifleet_rpc_connections") === 1);
    expect(sample((await scrape(metricsUrl)).text, "pifleet_ws_connections")).toBe(0);
    rpc.close();
    await waitFor(async () => sample((await scrape(metricsUrl)).text, "pifleet_rpc_connections") === 0);
  });

  it("puts the run's ids on every line logged during the run, once, secrets redacted", async () => {
    expect(runId).not.toBe("");
    const parsed = lines.map((line) => ({ line, json: JSON.parse(line) as Record<string, unknown> }));
    const ofRun = parsed.filter(({ json }) => json.runId === runId || json.session === session);
    // The run's own child logger and loggers that know nothing of the run (the session host's
    // template seeding, the executor's "run ended") both wrote lines during it.
    const messages = ofRun.map(({ json }) => json.msg);
    expect(messages).toContain("project dir seeded from the template");
    expect(messages).toContain("run ended");
    for (const { line, json } of ofRun) {
      expect(json).toMatchObject({ org: "default", project: "obs", session, runId });
      for (const key of ["org", "project", "session", "runId"]) {
        expect(line.split(`"${key}":`).length - 1, `${key} once in ${line}`).toBe(1);
      }
    }
    // Lines outside the run do not inherit its ids.
    const owned = parsed.find(({ json }) => json.msg === "project owned");
    expect(owned?.json.runId).toBeUndefined();
    expect(lines.join("\n")).not.toContain("sk-fake");
  });

  it("serves the read-only queue board on loopback without a token, with the project queue", async () => {
    const page = await fetch(`${stack.gateway.url}/v1/admin/queues/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    const api = await fetch(`${stack.gateway.url}/v1/admin/queues/api/queues`);
    expect(api.status).toBe(200);
    const names = ((await api.json()) as { queues: { name: string; readOnlyMode: boolean }[] }).queues.map(
      (q) => q.name,
    );
    expect(names).toEqual(expect.arrayContaining(["dispatch", "maintenance", "{default.obs}"]));
    const post = await fetch(`${stack.gateway.url}/v1/admin/queues/api/queues/dispatch/pause`, {
      method: "PUT",
    });
    expect(post.status).toBe(403);
    // Not in the API contract.
    const doc = (await (await fetch(`${stack.gateway.url}/openapi.json`)).json()) as { paths: object };
    expect(
      Object.keys(doc.paths).filter((p) => p.startsWith("/v1/admin/queues") || p === "/metrics"),
    ).toEqual([]);
  });
});

describe("keyed mode", () => {
  const ADMIN = "metrics-operator-token-0123456789abcdef";
  let stack: InProcessStack;
  let orgKey = "";

  beforeAll(async () => {
    stack = await startInProcessStack(inject("redisUrl"), "metrics-keyed", {
      env: { PI_FLEET_ADMIN_TOKEN: ADMIN, PI_FLEET_SECRET_KEY: "b".repeat(64), PI_FLEET_METRICS_PORT: "0" },
    });
    expect((await stack.call("POST", "/v1/admin/orgs", { id: "acme", name: "Acme" }, ADMIN)).status).toBe(
      201,
    );
    const key = await stack.call("POST", "/v1/admin/orgs/acme/keys", { role: "admin" }, ADMIN);
    orgKey = (key.json as { key: string }).key;
  });

  afterAll(async () => {
    await stack?.close();
  });

  it("/metrics needs the operator token on the API port, none on PI_FLEET_METRICS_PORT", async () => {
    const url = `${stack.gateway.url}/metrics`;
    const none = await scrape(url);
    expect(none.status).toBe(401);
    expect(JSON.parse(none.text)).toMatchObject({ code: "PF_ERR_AUTH_REQUIRED" });
    expect((await fetch(url)).headers.get("www-authenticate")).toMatch(/^Basic realm=/);
    const org = await scrape(url, { authorization: `Bearer ${orgKey}` });
    expect(org.status).toBe(401);
    expect(JSON.parse(org.text)).toMatchObject({ code: "PF_ERR_AUTH_INVALID" });
    const op = await scrape(url, { authorization: `Bearer ${ADMIN}` });
    expect(op.status).toBe(200);
    expect(sample(op.text, "pifleet_sse_connections")).toBe(0);
    const basic = Buffer.from(`prometheus:${ADMIN}`).toString("base64");
    expect((await scrape(url, { authorization: `Basic ${basic}` })).status).toBe(200);

    expect(stack.gateway.metricsUrl).toBeDefined();
    const open = await scrape(stack.gateway.metricsUrl as string);
    expect(open.status).toBe(200);
    expect(
      sample(open.text, "pifleet_http_request_duration_seconds_count", { route: "/metrics", status: "401" }),
    ).toBeGreaterThanOrEqual(1);
    expect((await fetch(stack.gateway.metricsUrl!.replace("/metrics", "/v1/projects"))).status).toBe(404);
  });

  it("the queue board answers the operator only", async () => {
    const page = `${stack.gateway.url}/v1/admin/queues/`;
    expect((await fetch(page)).status).toBe(401);
    expect((await fetch(page, { headers: { authorization: `Bearer ${orgKey}` } })).status).toBe(401);
    const op = await fetch(page, { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(op.status).toBe(200);
    expect(op.headers.get("content-type")).toContain("text/html");
    const html = await op.text();
    expect(html).toContain("<html");
    // Its scripts load with the same credential (a browser resends the Basic one by itself).
    const script = /<script[^>]+src="([^"]+)"/.exec(html)?.[1];
    expect(script).toBeDefined();
    const asset = new URL(script as string, page).toString();
    expect(asset.startsWith(page)).toBe(true);
    expect((await fetch(asset)).status).toBe(401);
    const basic = Buffer.from(`ops:${ADMIN}`).toString("base64");
    expect((await fetch(asset, { headers: { authorization: `Basic ${basic}` } })).status).toBe(200);
    const api = await fetch(`${stack.gateway.url}/v1/admin/queues/api/queues`, {
      headers: { authorization: `Basic ${basic}` },
    });
    expect(api.status).toBe(200);
    expect((await fetch(`${stack.gateway.url}/v1/admin/queues/api/queues`)).status).toBe(401);
  });
});
