// The isolation matrix (issue 6): with org B's admin key, every route of the live OpenAPI document
// is called on org A's ids. Every project/session/run-scoped route answers 404 (never 403, never
// data); org-level lists never contain A's data; B's changes to org-level settings never touch A's;
// the operator API refuses B's key; WebSocket subscriptions and requests on A's ids fail with 404
// codes. A route the matrix does not classify fails the test, so new routes cannot skip it.
import { waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import WebSocket from "ws";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const ADMIN = "isolation-operator-token-0123456789abcdef";
let stack: InProcessStack;
let keyA: string;
let keyB: string;
const a = { project: "", session: "", run: "", provider: "acme-private-llm" };

type Json = Record<string, unknown>;

/** A valid body per route (so validation passes and the lookup itself must answer). */
const BODIES: Record<string, unknown> = {
  "POST /v1/projects/{projectId}/sessions/{id}/prompt": { text: "[[reply:stolen]]" },
  "POST /v1/projects/{projectId}/sessions/{id}/steer": { text: "x" },
  "POST /v1/projects/{projectId}/sessions/{id}/follow_up": { text: "x" },
  "POST /v1/projects/{projectId}/sessions/{id}/abort": { cancelQueued: true },
  "POST /v1/projects/{projectId}/sessions/{id}/commands": { type: "get_messages" },
  "PATCH /v1/projects/{projectId}/sessions/{id}/settings": { thinkingLevel: "off" },
  "POST /v1/projects/{projectId}/sessions/{id}/extension-ui/{requestId}/response": { cancelled: true },
  "POST /v1/projects/{projectId}/sessions": {},
};

/** Org-level routes: B acts on its own org; checked below by content, not by status. */
const ORG_LEVEL = new Set([
  "GET /v1/projects",
  "POST /v1/projects",
  "GET /v1/custom/providers",
  "PUT /v1/custom/providers",
  "DELETE /v1/custom/providers/{provider}",
  "GET /v1/sessions/models",
  "GET /v1/models",
  "GET /v1/auth/providers",
  "PUT /v1/auth/providers/{provider}/api-key",
  "DELETE /v1/auth/providers/{provider}",
  "POST /v1/auth/providers/{provider}/subscription/start",
  "GET /v1/auth/subscription/{flowId}",
  "DELETE /v1/auth/subscription/{flowId}",
  "POST /v1/auth/subscription/{flowId}/continue",
  "GET /v1/keys",
  "POST /v1/keys",
  "DELETE /v1/keys/{keyId}",
  "GET /v1/audit",
  "GET /v1/ws",
]);
const PUBLIC = new Set(["GET /v1/healthz", "GET /v1/readyz"]);

function fill(path: string): string {
  return path
    .replace("{projectId}", a.project)
    .replace("/projects/{id}", `/projects/${a.project}`)
    .replace("{id}", a.session)
    .replace("{runId}", a.run)
    .replace("{requestId}", "ui-request-1");
}

async function liveRoutes(): Promise<string[]> {
  const doc = stack.gateway.app.swagger() as { paths: Record<string, Record<string, unknown>> };
  const out: string[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const method of Object.keys(methods)) out.push(`${method.toUpperCase()} ${path}`);
  }
  return out;
}

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "isolation", {
    env: { PI_FLEET_ADMIN_TOKEN: ADMIN, PI_FLEET_SECRET_KEY: "c".repeat(64) },
  });
  for (const org of ["org-a", "org-b"]) {
    expect((await stack.call("POST", "/v1/admin/orgs", { id: org }, ADMIN)).status).toBe(201);
  }
  keyA = ((await stack.call("POST", "/v1/admin/orgs/org-a/keys", { role: "admin" }, ADMIN)).json as Json)
    .key as string;
  keyB = ((await stack.call("POST", "/v1/admin/orgs/org-b/keys", { role: "admin" }, ADMIN)).json as Json)
    .key as string;
  await stack.registerFake(keyA);
  await stack.registerFake(keyB);
  const provider = {
    provider: a.provider,
    baseUrl: stack.fake.baseUrl,
    api: "openai-completions",
    apiKey: "sk-acme-only",
    models: [{ id: "acme-model" }],
  };
  expect((await stack.call("PUT", "/v1/custom/providers", provider, keyA)).status).toBe(200);
  expect(
    (await stack.call("PUT", "/v1/auth/providers/anthropic/api-key", { key: "sk-ant-acme-0123456789" }, keyA))
      .status,
  ).toBe(200);
  a.project = ((await stack.call("POST", "/v1/projects", { name: "acme-secret-project" }, keyA)).json as Json)
    .id as string;
  a.session = ((await stack.call("POST", `/v1/projects/${a.project}/sessions`, undefined, keyA)).json as Json)
    .id as string;
  const run = await stack.call(
    "POST",
    `/v1/projects/${a.project}/sessions/${a.session}/prompt`,
    { text: "[[reply:acme data]]" },
    keyA,
  );
  a.run = (run.json as Json).runId as string;
  await waitFor(
    async () => {
      const r = await stack.call(
        "GET",
        `/v1/projects/${a.project}/sessions/${a.session}/runs/${a.run}`,
        undefined,
        keyA,
      );
      return (r.json as Json).status === "finished";
    },
    { timeoutMs: 20_000 },
  );
});

afterAll(async () => {
  await stack?.close();
});

describe("isolation matrix (org B's key on org A's ids)", () => {
  it("classifies every route of the live document", async () => {
    const routes = await liveRoutes();
    const unclassified = routes.filter(
      (r) =>
        !ORG_LEVEL.has(r) &&
        !PUBLIC.has(r) &&
        !r.includes("/v1/admin/") &&
        !r.includes("{projectId}") &&
        !r.includes("/projects/{id}"),
    );
    expect(unclassified).toEqual([]);
    expect(routes.length).toBeGreaterThan(30);
  });

  it("answers 404 on every project-, session- and run-scoped route", async () => {
    const scoped = (await liveRoutes()).filter(
      (r) => r.includes("{projectId}") || r.includes("/projects/{id}"),
    );
    const results: string[] = [];
    for (const route of scoped) {
      const [method, path] = route.split(" ") as [string, string];
      if (path.endsWith("/rpc")) continue; // WebSocket upgrade: covered below
      const url = fill(path);
      let status: number;
      let body: string;
      if (path.endsWith("/events")) {
        const res = await fetch(`${stack.gateway.url}${url}`, {
          headers: { authorization: `Bearer ${keyB}`, accept: "text/event-stream" },
        });
        status = res.status;
        body = await res.text();
      } else {
        const res = await stack.call(method, url, BODIES[route], keyB);
        status = res.status;
        body = JSON.stringify(res.json);
      }
      if (status !== 404) results.push(`${route} → ${status} ${body.slice(0, 200)}`);
      expect(body).not.toContain("acme data");
    }
    expect(results).toEqual([]);
    expect(scoped.length).toBeGreaterThanOrEqual(18);
    // A's data is intact: the session, its single run and its messages.
    const session = await stack.call(
      "GET",
      `/v1/projects/${a.project}/sessions/${a.session}`,
      undefined,
      keyA,
    );
    expect(session.status).toBe(200);
    expect(JSON.stringify(session.json)).toContain("acme data");
    const state = await stack.call(
      "GET",
      `/v1/projects/${a.project}/sessions/${a.session}/state`,
      undefined,
      keyA,
    );
    expect((state.json as Json).status).toBe("idle");
    const project = await stack.call("GET", `/v1/projects/${a.project}`, undefined, keyA);
    expect(project.status).toBe(200);
  });

  it("never lists A's data in B's org-level answers and keeps B's changes in B", async () => {
    for (const path of [
      "/v1/projects",
      "/v1/custom/providers",
      "/v1/models",
      "/v1/sessions/models",
      "/v1/keys",
      "/v1/audit",
      "/v1/auth/providers",
    ]) {
      const res = await stack.call("GET", path, undefined, keyB);
      expect(res.status, path).toBe(200);
      const text = JSON.stringify(res.json);
      expect(text, path).not.toContain(a.project);
      expect(text, path).not.toContain(a.provider);
      expect(text, path).not.toContain("org-a");
    }
    // B's anthropic key status is B's own (A stored one; B did not).
    const providers = (await stack.call("GET", "/v1/auth/providers", undefined, keyB)).json as {
      providers: { provider: string; configured: boolean }[];
    };
    expect(providers.providers.find((p) => p.provider === "anthropic")?.configured ?? false).toBe(false);
    // B deleting "A's" provider name and A's built-in key only touches B's org.
    expect((await stack.call("DELETE", `/v1/custom/providers/${a.provider}`, undefined, keyB)).status).toBe(
      200,
    );
    expect((await stack.call("DELETE", "/v1/auth/providers/anthropic", undefined, keyB)).status).not.toBe(
      500,
    );
    const aProviders = JSON.stringify(
      (await stack.call("GET", "/v1/custom/providers", undefined, keyA)).json,
    );
    expect(aProviders).toContain(a.provider);
    const aAuth = (await stack.call("GET", "/v1/auth/providers", undefined, keyA)).json as {
      providers: { provider: string; configured: boolean }[];
    };
    expect(aAuth.providers.find((p) => p.provider === "anthropic")?.configured).toBe(true);
    // B creating a project with A's project name gets its own project.
    const mine = await stack.call("POST", "/v1/projects", { name: "acme-secret-project" }, keyB);
    expect(mine.status).toBe(200);
    const sessions = await stack.call("GET", `/v1/projects/${a.project}/sessions`, undefined, keyB);
    expect((sessions.json as { sessions: unknown[] }).sessions).toEqual([]);
    await stack.call("DELETE", `/v1/projects/${a.project}`, undefined, keyB);
    expect(
      (await stack.call("GET", `/v1/projects/${a.project}/sessions/${a.session}`, undefined, keyA)).status,
    ).toBe(200);
  });

  it("refuses B's key on the operator API", async () => {
    const admin = (await liveRoutes()).filter((r) => r.includes("/v1/admin/"));
    expect(admin.length).toBeGreaterThanOrEqual(8);
    for (const route of admin) {
      const [method, path] = route.split(" ") as [string, string];
      const url = path.replace("{orgId}", "org-a").replace("{keyId}", "0123456789abcdef");
      const res = await stack.call(
        method,
        url,
        method === "GET" || method === "DELETE" ? undefined : {},
        keyB,
      );
      expect(res.status, route).toBe(401);
    }
  });

  it("fails WebSocket subscriptions and requests on A's ids with 404 codes", async () => {
    const ws = new WebSocket(`${stack.gateway.url.replace("http", "ws")}/v1/ws`, {
      headers: { authorization: `Bearer ${keyB}` },
    });
    const frames: Json[] = [];
    ws.on("message", (d) => frames.push(JSON.parse(d.toString()) as Json));
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    ws.send(JSON.stringify({ kind: "hello", protocol: 1 }));
    ws.send(
      JSON.stringify({ kind: "subscribe", id: "s1", projectId: a.project, sessionId: a.session, after: "0" }),
    );
    ws.send(JSON.stringify({ kind: "subscribe", id: "s2", projectId: a.project }));
    ws.send(
      JSON.stringify({
        kind: "request",
        id: "r1",
        method: "prompt",
        params: { projectId: a.project, sessionId: a.session, text: "steal" },
      }),
    );
    await waitFor(() => frames.filter((f) => f.id === "s1" || f.id === "s2" || f.id === "r1").length >= 3, {
      timeoutMs: 5000,
    });
    ws.close();
    const byId = (id: string) => frames.find((f) => f.id === id) as Json;
    expect(byId("s1")).toMatchObject({ kind: "error", code: "PF_ERR_SESSION_NOT_FOUND" });
    expect(byId("s2")).toMatchObject({ kind: "error", code: "PF_ERR_PROJECT_NOT_FOUND" });
    expect(JSON.stringify(byId("r1"))).toContain("404");
    expect(frames.some((f) => f.kind === "event")).toBe(false);
    expect(JSON.stringify(frames)).not.toContain("acme data");
  });
});
