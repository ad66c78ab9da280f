// HTTP semantics of the REST surface on real gateways + Redis (no worker needed):
// - a wrong method on a real path answers 405 with `Allow` and the error shape, like a 404 without
//   auth or rate limit, while unknown paths, HEAD, OPTIONS / CORS preflights and the open-mode
//   absence of the operator API keep their answers;
// - DELETE of something missing: 404 where the seed contract declares one (projects, sessions)
//   and for pi-fleet's own resources (keys), 200 where the seed says "removed if it existed"
//   (custom providers);
// - open mode issues no API keys (it checks none): 409 PF_ERR_AUTH_KEYED_MODE_REQUIRED, while listing
//   and revoking work, and keyed mode issues them as before.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadEnv } from "@pi-fleet/config";
import { type Gateway, startGateway } from "@pi-fleet/gateway";
import { createLogger } from "@pi-fleet/observability";
import { uniquePrefix } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

const ADMIN = "http-semantics-operator-token-0123456789";
const ORIGIN = "https://app.example.com";
const SID = "0123456789abcdef0123456789abcdef";

let workspace: string;
let open: Gateway;
let keyed: Gateway;
let orgAdmin = "";

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: Record<string, unknown>;
}

async function call(
  gateway: Gateway,
  method: string,
  path: string,
  opts: { body?: unknown; token?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  const res = await fetch(`${gateway.url}${path}`, {
    method,
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // HEAD answers and empty bodies.
  }
  return { status: res.status, headers: res.headers, text, json };
}

beforeAll(async () => {
  workspace = await mkdtemp(join(tmpdir(), "pf-http-semantics-"));
  const prefix = uniquePrefix("http-semantics");
  const base = {
    REDIS_URL: inject("redisUrl"),
    PORT: "0",
    WORKSPACE_DIR: workspace,
    PI_FLEET_KEY_PREFIX: prefix,
    LOG_LEVEL: "warn",
  };
  const logger = createLogger("test", "warn");
  // Both on one prefix: the keyed gateway is what the open one's deployment becomes once the
  // operator sets PI_FLEET_ADMIN_TOKEN.
  open = await startGateway(loadEnv(base), logger);
  keyed = await startGateway(
    loadEnv({
      ...base,
      PI_FLEET_ADMIN_TOKEN: ADMIN,
      PI_FLEET_SECRET_KEY: "c".repeat(64),
      PI_FLEET_CORS_ORIGINS: ORIGIN,
      PI_FLEET_ORG_RATE_LIMIT: "1000",
    }),
    logger,
  );
  expect((await call(keyed, "POST", "/v1/admin/orgs", { body: { id: "acme" }, token: ADMIN })).status).toBe(
    201,
  );
  const key = await call(keyed, "POST", "/v1/admin/orgs/acme/keys", {
    body: { role: "admin" },
    token: ADMIN,
  });
  expect(key.status).toBe(201);
  orgAdmin = key.json.key as string;
});

afterAll(async () => {
  await open?.close();
  await keyed?.close();
  if (workspace) await rm(workspace, { recursive: true, force: true });
});

describe("a wrong method on a real path", () => {
  it.each([
    ["PUT", "/v1/projects", "GET, HEAD, POST"],
    ["DELETE", "/v1/projects?limit=1", "GET, HEAD, POST"],
    ["PATCH", "/v1/projects/no-such-project", "GET, HEAD, DELETE"],
    ["GET", `/v1/projects/no-such-project/sessions/${SID}/prompt`, "POST"],
    ["PUT", `/v1/projects/p/sessions/${SID}/settings`, "GET, HEAD, PATCH"],
    ["POST", "/v1/custom/providers/fake", "DELETE"],
    ["POST", "/v1/ws", "GET, HEAD"],
  ])("answers %s %s with 405 and Allow: %s", async (method, path, allow) => {
    const res = await call(open, method, path, method === "GET" ? {} : { body: {} });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe(allow);
    expect(res.json).toEqual({
      error: `${method} is not allowed on ${path.split("?")[0]}`,
      code: "PF_ERR_ROUTE_METHOD_NOT_ALLOWED",
      details: { allow: allow.split(", ") },
    });
  });

  it("answers a plain GET (no upgrade) of /v1/ws with 400 in the error shape, as the RPC socket's", async () => {
    const res = await call(open, "GET", "/v1/ws");
    expect(res.status).toBe(400);
    expect(res.json).toEqual({
      error: "this route speaks WebSocket: send an upgrade request",
      code: "PF_ERR_REQUEST_INVALID",
    });
  });

  it("answers HEAD on a path without GET with 405 and Allow, no body", async () => {
    const res = await call(open, "HEAD", `/v1/projects/p/sessions/${SID}/abort`);
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
    expect(res.text).toBe("");
  });

  it("keeps 404 for unknown paths, OPTIONS without CORS, and routes answering 404 themselves", async () => {
    for (const [method, path] of [
      ["GET", "/v1/nope"],
      ["PUT", "/v1/nope"],
      ["POST", `/v1/projects/p/sessions/${SID}/teleport`],
      ["GET", "/v1/projects/p/sessions/a/b/c/d/e"],
      ["OPTIONS", "/v1/projects"],
      // `/:id` would match with an empty id, which every route refuses: not the collection's path.
      ["POST", "/v1/projects/"],
      ["PUT", `/v1/projects/p/sessions/`],
      // Routes outside the OpenAPI document (metrics, docs UI) reveal no methods.
      ["POST", "/metrics"],
      ["POST", "/openapi.json"],
      ["PUT", "/docs/json"],
    ] as const) {
      const res = await call(open, method, path);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.json, `${method} ${path}`).toEqual({
        error: `no route ${method} ${path}`,
        code: "PF_ERR_ROUTE_NOT_FOUND",
      });
      expect(res.headers.get("allow")).toBeNull();
    }
    // A real route and method whose resource is missing: the route's own 404.
    expect((await call(open, "GET", "/v1/projects/no-such-project")).json.code).toBe(
      "PF_ERR_PROJECT_NOT_FOUND",
    );
    // HEAD of a GET route is served as before.
    expect((await call(open, "HEAD", "/v1/projects")).status).toBe(200);
  });

  it("keeps the operator API absent in open mode (404 whatever the method) and 405 in keyed mode", async () => {
    for (const method of ["GET", "PUT"]) {
      const res = await call(open, method, "/v1/admin/orgs");
      expect(res.status, method).toBe(404);
      expect(res.json.code, method).toBe("PF_ERR_ROUTE_NOT_FOUND");
    }
    const res = await call(keyed, "PUT", "/v1/admin/orgs", { token: ADMIN, body: {} });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("GET, HEAD, POST");
  });

  it("in keyed mode answers 405 like 404: without a key, no rate-limit budget spent, CORS headers kept", async () => {
    const headers = { origin: ORIGIN };
    const wrong = await call(keyed, "PUT", "/v1/projects", { headers });
    const unknown = await call(keyed, "GET", "/v1/nope", { headers });
    expect([wrong.status, unknown.status]).toEqual([405, 404]);
    for (const res of [wrong, unknown]) {
      expect(res.headers.get("access-control-allow-origin")).toBe(ORIGIN);
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("x-ratelimit-remaining")).toBeNull();
    }
    // The real method still needs a key, and spends the org's budget.
    expect((await call(keyed, "GET", "/v1/projects")).status).toBe(401);
    const listed = await call(keyed, "GET", "/v1/projects", { token: orgAdmin });
    expect(listed.status).toBe(200);
    expect(listed.headers.get("x-ratelimit-remaining")).not.toBeNull();
    // A CORS preflight is still answered by the CORS route, not with 405.
    const preflight = await call(keyed, "OPTIONS", "/v1/projects", {
      headers: { ...headers, "access-control-request-method": "PUT" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe(ORIGIN);
  });
});

describe("DELETE of something that does not exist", () => {
  it("answers 200 for a custom provider (seed: removed if it existed) and 404 for projects, sessions and keys", async () => {
    const provider = await call(open, "DELETE", "/v1/custom/providers/never-registered");
    expect(provider).toMatchObject({ status: 200, json: { ok: true } });
    const cases: [Gateway, string, string, string | undefined][] = [
      [open, "/v1/projects/no-such-project", "PF_ERR_PROJECT_NOT_FOUND", undefined],
      [open, `/v1/projects/no-such-project/sessions/${SID}`, "PF_ERR_PROJECT_NOT_FOUND", undefined],
      [open, "/v1/keys/0123456789abcdef", "PF_ERR_KEY_NOT_FOUND", undefined],
      [keyed, "/v1/keys/0123456789abcdef", "PF_ERR_KEY_NOT_FOUND", orgAdmin],
      [keyed, "/v1/admin/orgs/acme/keys/0123456789abcdef", "PF_ERR_KEY_NOT_FOUND", ADMIN],
      [keyed, "/v1/admin/orgs/no-such-org", "PF_ERR_ORG_NOT_FOUND", ADMIN],
    ];
    for (const [gateway, path, code, token] of cases) {
      const res = await call(gateway, "DELETE", path, token === undefined ? {} : { token });
      expect(res.status, path).toBe(404);
      expect(res.json.code, path).toBe(code);
      expect(typeof res.json.error, path).toBe("string");
    }
    // A session of a project that exists.
    expect((await call(open, "POST", "/v1/projects", { body: { name: "del" } })).status).toBe(200);
    const session = await call(open, "DELETE", `/v1/projects/del/sessions/${SID}`);
    expect(session.status).toBe(404);
    expect(session.json.code).toBe("PF_ERR_SESSION_NOT_FOUND");
  });
});

describe("API keys and the auth mode", () => {
  it("refuses to issue an API key in open mode: 409 PF_ERR_AUTH_KEYED_MODE_REQUIRED, nothing usable later", async () => {
    const mint = await call(open, "POST", "/v1/keys", { body: { role: "admin", name: "sneaky" } });
    // The operator switches to keyed mode and keeps the open-mode data in an org named `default`.
    const made = await call(keyed, "POST", "/v1/admin/orgs", { body: { id: "default" }, token: ADMIN });
    expect(made.status).toBe(201);
    const minted = typeof mint.json.key === "string" ? mint.json.key : undefined;
    const usable =
      minted === undefined ? undefined : (await call(keyed, "GET", "/v1/projects", { token: minted })).status;
    expect({ status: mint.status, code: mint.json.code, usable }).toEqual({
      status: 409,
      code: "PF_ERR_AUTH_KEYED_MODE_REQUIRED",
      usable: undefined,
    });
    expect(mint.json.error).toContain("only issued in keyed mode");
    expect(mint.json.error).toContain("PI_FLEET_ADMIN_TOKEN");
    const keys = await call(keyed, "GET", "/v1/admin/orgs/default/keys", { token: ADMIN });
    expect(keys.json).toEqual({ keys: [] });
  });

  it("lists and revokes in open mode a key issued there before (so it can be cleaned up)", async () => {
    // As the old POST /v1/keys did; in keyed mode with a `default` org that key works.
    const earlier = await open.services.tenancy.keys.create("default", "admin", { name: "from-before" });
    const org = await call(keyed, "POST", "/v1/admin/orgs", { body: { id: "default" }, token: ADMIN });
    expect([201, 409]).toContain(org.status);
    expect((await call(keyed, "GET", "/v1/projects", { token: earlier.key })).status).toBe(200);
    const listed = await call(open, "GET", "/v1/keys");
    expect(listed.status).toBe(200);
    expect((listed.json.keys as { id: string }[]).map((k) => k.id)).toContain(earlier.id);
    expect((await call(open, "DELETE", `/v1/keys/${earlier.id}`)).status).toBe(200);
    expect((await call(keyed, "GET", "/v1/projects", { token: earlier.key })).status).toBe(401);
  });

  it("issues keys in keyed mode as before", async () => {
    const res = await call(keyed, "POST", "/v1/keys", { body: { role: "viewer" }, token: orgAdmin });
    expect(res.status).toBe(201);
    expect((await call(keyed, "GET", "/v1/projects", { token: res.json.key as string })).status).toBe(200);
  });
});
