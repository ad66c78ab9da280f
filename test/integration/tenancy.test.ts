// Keyed mode end to end on a real gateway + worker + Redis: the operator API creates orgs and keys,
// roles gate what a key may do, revocation, expiry and disabling take effect on the next request
// (and stop the org's running runs and commands), org B never sees org A's data, every change is
// audited, and deleting an org removes everything.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { createKeys } from "@pi-fleet/redis";
import { EventLog } from "@pi-fleet/streams";
import { parseApiKey } from "@pi-fleet/tenancy";
import { waitFor } from "@pi-fleet/testkit";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import WebSocket from "ws";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const ADMIN = "test-operator-token-0123456789abcdef";
const SECRET_KEY = "a".repeat(64);

let stack: InProcessStack;
let redis: Redis;
type KeyName = "acmeAdmin" | "acmeMember" | "acmeViewer" | "globexAdmin";
const keys = {} as Record<KeyName, string>;
const keyIds = {} as Record<KeyName, string>;

type Json = Record<string, unknown>;

async function admin(method: string, path: string, body?: unknown) {
  return stack.call(method, path, body, ADMIN);
}

async function newKey(org: string, role: string, extra: Json = {}) {
  const res = await admin("POST", `/v1/admin/orgs/${org}/keys`, { role, ...extra });
  expect(res.status).toBe(201);
  const row = res.json as { id: string; key: string };
  return row;
}

async function runToEnd(token: string, project: string, session: string, text: string) {
  const res = await stack.call("POST", `/v1/projects/${project}/sessions/${session}/prompt`, { text }, token);
  expect(res.status).toBe(200);
  const runId = (res.json as { runId: string }).runId;
  return waitFor(
    async () => {
      const run = await stack.call(
        "GET",
        `/v1/projects/${project}/sessions/${session}/runs/${runId}`,
        undefined,
        token,
      );
      const status = (run.json as { status: string }).status;
      return ["finished", "failed", "aborted", "interrupted"].includes(status) ? status : undefined;
    },
    { timeoutMs: 20_000 },
  );
}

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "tenancy", {
    env: { PI_FLEET_ADMIN_TOKEN: ADMIN, PI_FLEET_SECRET_KEY: SECRET_KEY },
  });
  redis = new Redis(inject("redisUrl"));
  for (const org of ["acme", "globex"]) {
    expect((await admin("POST", "/v1/admin/orgs", { id: org, name: org.toUpperCase() })).status).toBe(201);
  }
  for (const [name, org, role] of [
    ["acmeAdmin", "acme", "admin"],
    ["acmeMember", "acme", "member"],
    ["acmeViewer", "acme", "viewer"],
    ["globexAdmin", "globex", "admin"],
  ] as const) {
    const k = await newKey(org, role, { name });
    keys[name] = k.key;
    keyIds[name] = k.id;
  }
  await stack.registerFake(keys.acmeAdmin);
  await stack.registerFake(keys.globexAdmin);
});

afterAll(async () => {
  await stack?.close();
  await redis?.quit();
});

describe("keyed mode", () => {
  it("requires a key on /v1 and keeps health public", async () => {
    const none = await stack.call("GET", "/v1/projects");
    expect(none.status).toBe(401);
    expect((none.json as Json).code).toBe("PF_ERR_AUTH_REQUIRED");
    const bad = await stack.call("GET", "/v1/projects", undefined, "pfk_0123456789abcdef_" + "x".repeat(43));
    expect(bad.status).toBe(401);
    expect((bad.json as Json).code).toBe("PF_ERR_AUTH_INVALID");
    expect((await stack.call("GET", "/v1/healthz")).status).toBe(200);
  });

  it("refuses a WebSocket upgrade without a valid key with 401 (and does not keep the socket)", async () => {
    for (const headers of [{}, { authorization: "Bearer pfk_0123456789abcdef_" + "y".repeat(43) }]) {
      const ws = new WebSocket(`${stack.gateway.url.replace("http", "ws")}/v1/ws`, { headers });
      const status = await new Promise<number>((resolve, reject) => {
        ws.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.once("open", () => reject(new Error("upgraded without a key")));
        ws.once("error", () => undefined);
      });
      expect(status).toBe(401);
      ws.terminate();
    }
    // afterAll's gateway close would hang if a refused upgrade's socket were left open.
  });

  it("guards the admin API with the operator token, never an org key", async () => {
    expect((await stack.call("GET", "/v1/admin/orgs")).status).toBe(401);
    expect(
      (await stack.call("GET", "/v1/admin/orgs", undefined, "wrong-token-wrong-token-wrong")).status,
    ).toBe(401);
    expect((await stack.call("GET", "/v1/admin/orgs", undefined, keys.acmeAdmin)).status).toBe(401);
    const list = await admin("GET", "/v1/admin/orgs");
    expect((list.json as { orgs: Json[] }).orgs.map((o) => o.id)).toEqual(["acme", "globex"]);
    expect((await admin("POST", "/v1/admin/orgs", { id: "acme" })).status).toBe(409);
    const bad = await admin("POST", "/v1/admin/orgs", { id: "Bad Id!" });
    expect(bad.status).toBe(400);
  });

  it("shows a key once and stores only its hash", async () => {
    // The secret part of `pfk_<keyId>_<secret>` (base64url: it may itself hold "_").
    const secret = parseApiKey(keys.acmeAdmin)?.secret;
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const list = await admin("GET", "/v1/admin/orgs/acme/keys");
    const rows = (list.json as { keys: Json[] }).keys;
    expect(rows.map((r) => r.role).sort()).toEqual(["admin", "member", "viewer"]);
    expect(JSON.stringify(rows)).not.toContain(secret);
    for (const r of rows) expect(Object.keys(r)).not.toContain("key");
    const stored = await redis.hgetall(`${stack.prefix}:apikey:${keyIds.acmeAdmin}`);
    expect(stored.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(stored)).not.toContain(secret);
  });

  it("lets members run prompts, viewers only read, admins manage", async () => {
    const project = (await stack.call("POST", "/v1/projects", { name: "shared-name" }, keys.acmeMember))
      .json as Json;
    expect(project.id).toBe("shared-name");
    const session = (
      await stack.call("POST", `/v1/projects/shared-name/sessions`, undefined, keys.acmeMember)
    ).json as Json;
    const sid = session.id as string;
    expect(await runToEnd(keys.acmeMember, "shared-name", sid, "[[reply:hello acme]]")).toBe("finished");

    // Viewer: reads and get_* commands, nothing else.
    expect(
      (await stack.call("GET", `/v1/projects/shared-name/sessions/${sid}`, undefined, keys.acmeViewer))
        .status,
    ).toBe(200);
    const prompt = await stack.call(
      "POST",
      `/v1/projects/shared-name/sessions/${sid}/prompt`,
      { text: "x" },
      keys.acmeViewer,
    );
    expect(prompt.status).toBe(403);
    expect((prompt.json as Json).code).toBe("PF_ERR_AUTH_FORBIDDEN");
    const state = await stack.call(
      "POST",
      `/v1/projects/shared-name/sessions/${sid}/commands`,
      { type: "get_state" },
      keys.acmeViewer,
    );
    expect(state.status).toBe(200);
    const rename = await stack.call(
      "POST",
      `/v1/projects/shared-name/sessions/${sid}/commands`,
      { type: "set_session_name", name: "x" },
      keys.acmeViewer,
    );
    expect(rename.status).toBe(403);
    expect((await stack.call("POST", "/v1/projects", { name: "v" }, keys.acmeViewer)).status).toBe(403);

    // Member: no provider keys, no project deletion, no key management.
    const provider = {
      provider: "p2",
      baseUrl: "http://127.0.0.1:1/v1",
      api: "openai-completions",
      models: [{ id: "m" }],
    };
    expect((await stack.call("PUT", "/v1/custom/providers", provider, keys.acmeMember)).status).toBe(403);
    expect((await stack.call("DELETE", "/v1/projects/shared-name", undefined, keys.acmeMember)).status).toBe(
      403,
    );
    expect((await stack.call("GET", "/v1/keys", undefined, keys.acmeMember)).status).toBe(403);
    expect((await stack.call("GET", "/v1/keys", undefined, keys.acmeAdmin)).status).toBe(200);
  });

  it("keeps orgs apart: the same project name is two projects, the other's ids are 404", async () => {
    const acmeSessions = (
      await stack.call("GET", "/v1/projects/shared-name/sessions", undefined, keys.acmeAdmin)
    ).json as { sessions: Json[] };
    const sid = acmeSessions.sessions[0]?.id as string;
    expect(sid).toBeTruthy();
    // globex has no such project yet: 404, not 403
    const get = await stack.call("GET", "/v1/projects/shared-name", undefined, keys.globexAdmin);
    expect(get.status).toBe(404);
    expect(
      (await stack.call("GET", `/v1/projects/shared-name/sessions/${sid}`, undefined, keys.globexAdmin))
        .status,
    ).toBe(404);
    // globex creates the same name: its own, empty project
    expect((await stack.call("POST", "/v1/projects", { name: "shared-name" }, keys.globexAdmin)).status).toBe(
      200,
    );
    const theirs = (await stack.call("GET", "/v1/projects/shared-name/sessions", undefined, keys.globexAdmin))
      .json as { sessions: Json[] };
    expect(theirs.sessions).toEqual([]);
    expect(
      (await stack.call("GET", `/v1/projects/shared-name/sessions/${sid}`, undefined, keys.globexAdmin))
        .status,
    ).toBe(404);
    expect(
      (
        await stack.call(
          "POST",
          `/v1/projects/shared-name/sessions/${sid}/prompt`,
          { text: "steal" },
          keys.globexAdmin,
        )
      ).status,
    ).toBe(404);
    // workspace paths are namespaced by org
    const a = (await stack.call("GET", "/v1/projects/shared-name", undefined, keys.acmeAdmin)).json as Json;
    const b = (await stack.call("GET", "/v1/projects/shared-name", undefined, keys.globexAdmin)).json as Json;
    expect(a.projectDir).not.toEqual(b.projectDir);
  });

  it("refuses a revoked key, an expired key and a disabled org on the next request", async () => {
    const temp = await newKey("acme", "member");
    expect((await stack.call("GET", "/v1/projects", undefined, temp.key)).status).toBe(200);
    expect((await stack.call("DELETE", `/v1/keys/${temp.id}`, undefined, keys.acmeAdmin)).status).toBe(200);
    expect((await stack.call("GET", "/v1/projects", undefined, temp.key)).status).toBe(401);
    // another org's admin cannot revoke acme's keys
    expect(
      (await stack.call("DELETE", `/v1/keys/${keyIds.acmeViewer}`, undefined, keys.globexAdmin)).status,
    ).toBe(404);

    const expiring = await newKey("acme", "viewer", { expiresAt: new Date(Date.now() + 1000).toISOString() });
    expect((await stack.call("GET", "/v1/projects", undefined, expiring.key)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await stack.call("GET", "/v1/projects", undefined, expiring.key)).status).toBe(401);
    expect(
      (await admin("POST", "/v1/admin/orgs/acme/keys", { role: "viewer", expiresAt: "2000-01-01T00:00:00Z" }))
        .status,
    ).toBe(400);

    expect((await admin("PATCH", "/v1/admin/orgs/acme", { disabled: true })).status).toBe(200);
    expect((await stack.call("GET", "/v1/projects", undefined, keys.acmeAdmin)).status).toBe(401);
    expect((await admin("PATCH", "/v1/admin/orgs/acme", { disabled: false })).status).toBe(200);
    expect((await stack.call("GET", "/v1/projects", undefined, keys.acmeAdmin)).status).toBe(200);
  });

  it("stops a disabled org's running run and cancels its queued runs", async () => {
    // Disabling shut the org's keys out, but its queued runs still started (and spent credits),
    // and a run already running went on to its end.
    const token = keys.acmeMember;
    await stack.call("POST", "/v1/projects", { name: "disabled-runs" }, token);
    const sid = ((await stack.call("POST", "/v1/projects/disabled-runs/sessions", {}, token)).json as Json)
      .id as string;
    const base = `/v1/projects/disabled-runs/sessions/${sid}`;
    const runIds: string[] = [];
    // The first run streams for about 30 s unless it is stopped.
    for (const text of ["[[delay:500]] [[deltas:60]]", "[[reply:second]]", "[[reply:third]]"]) {
      runIds.push(
        ((await stack.call("POST", `${base}/prompt`, { text }, token)).json as Json).runId as string,
      );
    }
    const log = new EventLog(redis, createKeys(stack.prefix), 1000);
    const status = async (runId: string) => (await log.getRun("acme", "disabled-runs", runId))?.status;
    await waitFor(async () => (await status(runIds[0]!)) === "running", { timeoutMs: 10_000 });
    const disabledAt = Date.now();
    expect((await admin("PATCH", "/v1/admin/orgs/acme", { disabled: true })).status).toBe(200);
    try {
      await waitFor(async () => (await status(runIds[0]!)) === "interrupted", { timeoutMs: 10_000 });
      expect(Date.now() - disabledAt).toBeLessThan(5_000);
      expect((await log.getRun("acme", "disabled-runs", runIds[0]!))?.reason).toBe("org_disabled");
      const ended = (await log.range({ org: "acme", project: "disabled-runs", session: sid }, "0", 10_000))
        .map((e) => JSON.parse(e.data) as Json)
        .find((e) => e.type === "run_interrupted");
      expect(ended).toMatchObject({ runId: runIds[0], reason: "org_disabled" });
      await waitFor(async () => (await status(runIds[2]!)) === "cancelled", { timeoutMs: 15_000 });
      expect(await status(runIds[1]!)).toBe("cancelled");
      expect((await log.getRun("acme", "disabled-runs", runIds[1]!))?.reason).toBe("org_disabled");
    } finally {
      expect((await admin("PATCH", "/v1/admin/orgs/acme", { disabled: false })).status).toBe(200);
    }
  });

  it("audits admin actions and key use, readable by the org's admins only", async () => {
    const res = await stack.call("GET", "/v1/audit?limit=1000", undefined, keys.acmeAdmin);
    expect(res.status).toBe(200);
    const entries = (res.json as { entries: Json[] }).entries;
    const actions = entries.map((e) => `${e.actor} ${e.action}`);
    expect(actions).toContain("operator org.create");
    expect(actions).toContain("operator key.create");
    expect(actions).toContain(`key:${keyIds.acmeAdmin} key.revoke`);
    expect(actions).toContain(
      `key:${keyIds.acmeMember} key.use POST /v1/projects/:projectId/sessions/:id/prompt`,
    );
    expect(entries.every((e) => typeof e.at === "string")).toBe(true);
    // newest first
    expect(entries[0]?.action).toBe("org.update");
    expect(JSON.stringify(entries)).not.toContain("globex");
    expect((await stack.call("GET", "/v1/audit", undefined, keys.acmeViewer)).status).toBe(403);
    // Paging: older than an entry; nothing is older than 0-0; ids Redis refuses are bad input.
    const older = await stack.call("GET", `/v1/audit?before=${entries[0]?.id}`, undefined, keys.acmeAdmin);
    expect((older.json as { entries: Json[] }).entries[0]?.id).toBe(entries[1]?.id);
    const none = await stack.call("GET", "/v1/audit?before=0-0", undefined, keys.acmeAdmin);
    expect([none.status, (none.json as { entries: Json[] }).entries]).toEqual([200, []]);
    for (const before of ["18446744073709551616-0", "1-99999999999999999999"]) {
      for (const path of [`/v1/audit?before=${before}`, `/v1/admin/orgs/acme/audit?before=${before}`]) {
        const res = path.startsWith("/v1/admin")
          ? await admin("GET", path)
          : await stack.call("GET", path, undefined, keys.acmeAdmin);
        expect([path, res.status, (res.json as Json).code]).toEqual([path, 400, "PF_ERR_REQUEST_INVALID"]);
      }
    }
  });

  it("stops a disabled org's running bash command, which answers as cancelled", async () => {
    // Disabling stopped the org's runs, but a user bash command already running went on to its
    // end (up to its time cap). After the audit test: this command's key.use entry lands after
    // the response, so it could come after the re-enabling org.update that test expects newest.
    const token = keys.acmeMember;
    expect((await stack.call("POST", "/v1/projects", { name: "disabled-commands" }, token)).status).toBe(200);
    const projectDir = (
      (await stack.call("GET", "/v1/projects/disabled-commands", undefined, token)).json as Json
    ).projectDir as string;
    const sid = (
      (await stack.call("POST", "/v1/projects/disabled-commands/sessions", {}, token)).json as Json
    ).id as string;
    const command = stack.call(
      "POST",
      `/v1/projects/disabled-commands/sessions/${sid}/commands`,
      { type: "bash", command: "touch started; sleep 20" },
      token,
    );
    await waitFor(() => existsSync(join(projectDir, "started")), { timeoutMs: 10_000 });
    const disabledAt = Date.now();
    expect((await admin("PATCH", "/v1/admin/orgs/acme", { disabled: true })).status).toBe(200);
    try {
      const res = await command;
      expect(Date.now() - disabledAt).toBeLessThan(5_000);
      // pi's answer for a cancelled bash command: no exit code.
      expect(res).toMatchObject({
        status: 200,
        json: { type: "bash", success: true, data: { cancelled: true } },
      });
      expect((res.json as { data: Json }).data).not.toHaveProperty("exitCode");
    } finally {
      expect((await admin("PATCH", "/v1/admin/orgs/acme", { disabled: false })).status).toBe(200);
    }
  });

  it("deletes an org with its keys, projects, streams and secrets", async () => {
    expect((await admin("DELETE", "/v1/admin/orgs/globex")).status).toBe(200);
    expect((await stack.call("GET", "/v1/projects", undefined, keys.globexAdmin)).status).toBe(401);
    expect((await admin("GET", "/v1/admin/orgs/globex")).status).toBe(404);
    const left = async (): Promise<string[]> => {
      const found: string[] = [];
      let cursor = "0";
      do {
        const [next, batch] = await redis.scan(cursor, "MATCH", `${stack.prefix}:*globex*`, "COUNT", 1000);
        cursor = next;
        found.push(...batch);
      } while (cursor !== "0");
      // BullMQ's obliterated queue may leave nothing; registry, secrets, keys and audit must be gone.
      return found.filter((k) => !k.startsWith(`${stack.prefix}:q:`));
    };
    // At once but each project deletion's record and marker, which its maintenance job removes (~1 s).
    expect((await left()).filter((k) => !/:project-deleti(on|ng):/.test(k))).toEqual([]);
    await waitFor(async () => ((await left()).length === 0 ? true : undefined), { timeoutMs: 15_000 });
    // acme is untouched
    expect((await stack.call("GET", "/v1/projects/shared-name", undefined, keys.acmeAdmin)).status).toBe(200);
  });
});
