// `GET …/sessions/{id}/rpc` in keyed mode on an in-process gateway + worker + Redis: auth on the
// upgrade (401 without a key, 404 for another org's or an unknown session, before any upgrade),
// roles as for REST (a viewer reads but cannot prompt), pi's records (responses with the echoed
// id, pi's error texts, pi's events without the fleet's run events), the frame limit (1009),
// moving to the session new_session created, extension UI round trips, and close 1001 on
// gateway shutdown. Parity with
// pi's own RPC mode is checked by test/e2e/rpc-parity.test.ts.
import { fileURLToPath } from "node:url";
import { waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import WebSocket from "ws";
import { FRAME_ENVELOPE_BYTES } from "../../apps/gateway/src/ws/websocket-plugin.ts";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const ADMIN = "rpc-operator-token-0123456789abcdef";
const MAX_BODY = 64 * 1024;
const MAX_IMAGE = 1024;

type Rec = Record<string, unknown>;

let stack: InProcessStack;
const keys = { admin: "", member: "", viewer: "", other: "" };
let session = "";

/** An RPC client over `ws` that records every record it receives. */
interface Client {
  ws: WebSocket;
  records: Rec[];
  closed: Promise<{ code: number; reason: string }>;
  send(record: Rec | string): void;
  /** The response with `id` (waits). */
  response(id: string | number, timeoutMs?: number): Promise<Rec>;
}

function rpcUrl(project: string, id: string): string {
  return `${stack.gateway.url.replace("http", "ws")}/v1/projects/${project}/sessions/${id}/rpc`;
}

/** Opens a socket; resolves the client, or rejects with the HTTP status of a refused upgrade. */
function connect(url: string, token?: string): Promise<Client> {
  const ws = new WebSocket(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  const records: Rec[] = [];
  ws.on("message", (data) => records.push(JSON.parse(String(data)) as Rec));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on("close", (code, reason) => resolve({ code, reason: String(reason) })),
  );
  const client: Client = {
    ws,
    records,
    closed,
    send: (record) => ws.send(typeof record === "string" ? record : JSON.stringify(record)),
    response: (id, timeoutMs = 10_000) =>
      waitFor(() => records.find((r) => r.type === "response" && r.id === id), {
        timeoutMs,
        message: `response ${id}`,
      }),
  };
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(client));
    ws.once("unexpected-response", (_req, res) => {
      reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode }));
      res.resume();
      ws.terminate();
    });
    ws.once("error", (err) => reject(err));
  });
}

async function refusedStatus(url: string, token?: string): Promise<number> {
  try {
    const c = await connect(url, token);
    c.ws.close();
    return 101;
  } catch (err) {
    return (err as { status?: number }).status ?? -1;
  }
}

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "rpc-socket", {
    env: {
      PI_FLEET_ADMIN_TOKEN: ADMIN,
      PI_FLEET_SECRET_KEY: "c".repeat(64),
      PI_FLEET_MAX_BODY_BYTES: String(MAX_BODY),
      PI_FLEET_MAX_IMAGE_BYTES: String(MAX_IMAGE),
      PI_FLEET_MAX_IMAGES: "1",
    },
  });
  for (const org of ["acme", "globex"]) {
    expect((await stack.call("POST", "/v1/admin/orgs", { id: org }, ADMIN)).status).toBe(201);
  }
  const key = async (org: string, role: string) =>
    ((await stack.call("POST", `/v1/admin/orgs/${org}/keys`, { role }, ADMIN)).json as { key: string }).key;
  keys.admin = await key("acme", "admin");
  keys.member = await key("acme", "member");
  keys.viewer = await key("acme", "viewer");
  keys.other = await key("globex", "admin");
  await stack.registerFake(keys.admin);
  expect((await stack.call("POST", "/v1/projects", { name: "rpcp" }, keys.member)).status).toBe(200);
  session = ((await stack.call("POST", "/v1/projects/rpcp/sessions", {}, keys.member)).json as { id: string })
    .id;
});

afterAll(async () => {
  await stack?.close();
});

describe("pi RPC over WebSocket", () => {
  it("authenticates the upgrade like REST and answers 404 before upgrading", async () => {
    expect(await refusedStatus(rpcUrl("rpcp", session))).toBe(401);
    expect(await refusedStatus(rpcUrl("rpcp", session), "pfk_bogus_key")).toBe(401);
    expect(await refusedStatus(rpcUrl("rpcp", session), keys.other)).toBe(404);
    expect(await refusedStatus(rpcUrl("rpcp", "01aaaaaaaaaaaaaaaaaaaaaaaa"), keys.member)).toBe(404);
    expect(await refusedStatus(rpcUrl("nope", session), keys.member)).toBe(404);
    expect(await refusedStatus(rpcUrl("rpcp", session), keys.viewer)).toBe(101);
    // Without an upgrade the route is a plain 400.
    const plain = await stack.call(
      "GET",
      `/v1/projects/rpcp/sessions/${session}/rpc`,
      undefined,
      keys.member,
    );
    expect(plain.status).toBe(400);
  });

  it("speaks pi's records: ids echoed, pi's error texts, pi's events only", async () => {
    const c = await connect(rpcUrl("rpcp", session), keys.member);
    c.send({ id: "s1", type: "get_state" });
    const state = await c.response("s1");
    expect(state).toMatchObject({ type: "response", command: "get_state", success: true });
    expect((state.data as Rec).isStreaming).toBe(false);

    c.send({ id: 7, type: "frobnicate" });
    expect(await c.response(7)).toEqual({
      id: 7,
      type: "response",
      command: "frobnicate",
      success: false,
      error: "Unknown command: frobnicate",
    });
    c.send("{not json");
    const parse = await waitFor(() => c.records.find((r) => r.command === "parse"));
    expect(parse).toEqual({
      type: "response",
      command: "parse",
      success: false,
      error: `Failed to parse command: ${jsonError("{not json")}`,
    });

    c.send({ id: "p1", type: "prompt", message: "[[reply:over rpc]]" });
    await waitFor(() => c.records.find((r) => r.type === "agent_settled"), { timeoutMs: 20_000 });
    const types = c.records.slice(c.records.indexOf(parse) + 1).map((r) => r.type);
    expect(types[0]).toBe("response"); // the prompt's answer comes first, as in pi
    expect(c.records.find((r) => r.id === "p1")).toEqual({
      id: "p1",
      type: "response",
      command: "prompt",
      success: true,
    });
    expect(types[1]).toBe("agent_start");
    expect(types).toContain("message_update");
    expect(types.filter((t) => String(t).startsWith("run_"))).toEqual([]);

    c.send({ id: "t", type: "get_last_assistant_text" });
    expect((await c.response("t")).data).toEqual({ text: "over rpc" });
    c.send({ id: "n", type: "set_session_name", name: "   " });
    expect((await c.response("n")).error).toBe("Session name cannot be empty");
    // Fields a command does not define are ignored, as pi does (REST answers them with a 400)...
    c.send({ id: "x", type: "set_session_name", name: "extra", sessionFile: "/etc/passwd", at: 1 });
    expect(await c.response("x")).toEqual({
      id: "x",
      type: "response",
      command: "set_session_name",
      success: true,
    });
    c.send({ id: "sx", type: "get_state", verbose: true });
    expect(((await c.response("sx")).data as Rec).sessionName).toBe("extra");
    // ...and a null optional one is absent; a wrongly typed argument is an error naming it.
    c.send({ id: "cn", type: "get_entries", since: null });
    expect(await c.response("cn")).toMatchObject({ command: "get_entries", success: true });
    c.send({ id: "w", type: "set_session_name", name: 5 });
    expect(await c.response("w")).toEqual({
      id: "w",
      type: "response",
      command: "set_session_name",
      success: false,
      error: "body/name must be string",
    });
    // Nesting that JSON.stringify cannot echo back (it stopped the gateway): a parse error.
    c.send(`{"type":"nope","id":${"[".repeat(10_000)}${"]".repeat(10_000)}}`);
    await waitFor(() => c.records.filter((r) => r.command === "parse").length === 2);
    expect(c.records.filter((r) => r.command === "parse")[1]).toEqual({
      type: "response",
      command: "parse",
      success: false,
      error: "Failed to parse command: JSON nested deeper than 64 levels",
    });
    c.ws.close();
  });

  it("answers pi's arguments with pi's texts and no length limit pi lacks; null optionals and ids as REST does", async () => {
    const own = (
      (await stack.call("POST", "/v1/projects/rpcp/sessions", {}, keys.member)).json as { id: string }
    ).id;
    const rest = async (body: Rec) =>
      stack.call("POST", `/v1/projects/rpcp/sessions/${own}/commands`, body, keys.member);
    const c = await connect(rpcUrl("rpcp", own), keys.member);
    const rpc = async (id: string, body: Rec) => {
      c.send({ id, ...body });
      return c.response(id, 20_000);
    };
    const refused = (id: string, command: string, error: string) => ({
      id,
      type: "response",
      command,
      success: false,
      error,
    });
    // pi trims the name; the fleet allows 200 characters once trimmed (the registry lists it).
    expect(await rpc("n1", { type: "set_session_name", name: "n".repeat(201) })).toEqual(
      refused("n1", "set_session_name", "Session name too long: at most 200 characters"),
    );
    const padded = "p".repeat(199);
    expect(await rpc("n2", { type: "set_session_name", name: ` ${padded} ` })).toMatchObject({
      success: true,
    });
    expect(((await rpc("s2", { type: "get_state" })).data as Rec).sessionName).toBe(padded);
    // pi's own texts for entry ids and models it does not know, whatever their length.
    const entry = "e".repeat(129);
    expect(await rpc("f", { type: "fork", entryId: entry })).toEqual(
      refused("f", "fork", "Invalid entry ID for forking"),
    );
    expect(await rpc("e", { type: "get_entries", since: entry })).toEqual(
      refused("e", "get_entries", `Entry not found: ${entry}`),
    );
    const provider = "p".repeat(65);
    const modelId = "m".repeat(201);
    expect(await rpc("m", { type: "set_model", provider, modelId })).toEqual(
      refused("m", "set_model", `Model not found: ${provider}/${modelId}`),
    );
    // A null optional field is absent over both, with the same answer; a null required one an error.
    for (const [i, body] of [
      { type: "get_entries", since: null },
      { type: "export_html", outputPath: null },
    ].entries()) {
      const viaRest = await rest(body);
      expect(viaRest.status, body.type).toBe(200);
      const { type: _type, ...answer } = viaRest.json as Rec;
      expect(await rpc(`null-${i}`, body)).toEqual({
        id: `null-${i}`,
        type: "response",
        command: body.type,
        ...answer,
      });
    }
    expect(await rpc("b", { type: "bash", command: "echo null", excludeFromContext: null })).toMatchObject({
      success: true,
      data: { output: "null\n", exitCode: 0 },
    });
    const nullName = await rest({ type: "set_session_name", name: null });
    expect(nullName.status).toBe(400);
    expect(await rpc("nn", { type: "set_session_name", name: null })).toEqual(
      refused("nn", "set_session_name", (nullName.json as { error: string }).error),
    );
    // pi's request id: any length. REST refuses a bash id over 128 characters (every output event
    // carries it); the socket answers such a bash as pi does, its events untagged.
    const longId = "i".repeat(500);
    expect(await rpc(longId, { type: "get_state" })).toMatchObject({ id: longId, success: true });
    const bashId = "b".repeat(129);
    expect((await rest({ id: bashId, type: "bash", command: "echo" })).status).toBe(400);
    expect(await rpc(bashId, { type: "bash", command: "echo hi" })).toMatchObject({
      id: bashId,
      success: true,
      data: { output: "hi\n", exitCode: 0 },
    });
    c.ws.close();
  });

  it("answers a prompt whose run fails before pi starts it with success: false, as pi's preflight", async () => {
    // globex has no provider: the run fails before pi's loop starts (no model / no API key).
    expect((await stack.call("POST", "/v1/projects", { name: "bare" }, keys.other)).status).toBe(200);
    const bare = (
      (await stack.call("POST", "/v1/projects/bare/sessions", {}, keys.other)).json as { id: string }
    ).id;
    const c = await connect(rpcUrl("bare", bare), keys.other);
    c.send({ id: "p", type: "prompt", message: "hello" });
    const answer = await c.response("p", 20_000);
    expect(answer).toMatchObject({ type: "response", command: "prompt", success: false });
    expect(String(answer.error)).not.toBe("");
    // Nothing else: no pi events, and not the fleet's run_failed (the response told it all).
    c.send({ id: "s", type: "get_state" });
    await c.response("s", 20_000);
    expect(c.records.map((r) => r.type)).toEqual(["response", "response"]);
    c.ws.close();
  });

  it("applies roles per command: a viewer reads but cannot prompt", async () => {
    const c = await connect(rpcUrl("rpcp", session), keys.viewer);
    c.send({ id: 1, type: "get_messages" });
    expect((await c.response(1)).success).toBe(true);
    c.send({ id: 2, type: "prompt", message: "hi" });
    const refused = await c.response(2);
    expect(refused).toMatchObject({ command: "prompt", success: false });
    expect(String(refused.error)).toContain("member role");
    c.ws.close();
  });

  it("caps frames at the prompt route's body limit plus a frame envelope", async () => {
    const c = await connect(rpcUrl("rpcp", session), keys.member);
    // Body limit of the prompt route: MAX_BODY + the base64 size of one MAX_IMAGE image + 128.
    const limit = MAX_BODY + 4 * Math.ceil(MAX_IMAGE / 3) + 128;
    // Within the frame limit but over the commands route's body limit: that route's 413 text. (The
    // padding is a field of the command: the socket drops unknown fields, as pi ignores them.)
    const tooLarge = { success: false, error: expect.stringMatching(/too large/i) };
    c.send({ id: "big", type: "compact", customInstructions: "x".repeat(limit - 80) });
    expect(await c.response("big")).toMatchObject({ command: "compact", ...tooLarge });
    // Over every route's body limit but within the envelope: still an answer, not a closed socket.
    c.send({ id: "bigger", type: "compact", customInstructions: "x".repeat(limit + 1000) });
    expect(await c.response("bigger")).toMatchObject({ command: "compact", ...tooLarge });
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    c.send("x".repeat(limit + FRAME_ENVELOPE_BYTES + 1));
    expect((await c.closed).code).toBe(1009);
  });

  it("moves to the session new_session created", async () => {
    const c = await connect(rpcUrl("rpcp", session), keys.member);
    /** get_state's sessionId: the fleet id of the session the socket drives (pi's clients read it). */
    const stateId = async (id: string) => {
      c.send({ id, type: "get_state" });
      return ((await c.response(id)).data as { sessionId: unknown }).sessionId;
    };
    const first = await stateId("state-first");
    expect(first).toBe(session);
    c.send({ id: "new", type: "new_session" });
    const created = await c.response("new", 20_000);
    expect(created).toMatchObject({ command: "new_session", success: true, data: { cancelled: false } });
    const next = (created.data as { sessionId: string }).sessionId;
    expect(next).not.toBe(session);
    expect(await stateId("state-next")).toBe(next);
    c.send({ id: "m", type: "get_messages" });
    expect((await c.response("m")).data).toEqual({ messages: [] });
    c.send({ id: "p", type: "prompt", message: "[[reply:in the new one]]" });
    await waitFor(() => c.records.find((r) => r.type === "agent_settled"), { timeoutMs: 20_000 });
    const history = await stack.call("GET", `/v1/projects/rpcp/sessions/${next}`, undefined, keys.member);
    expect(JSON.stringify(history.json)).toContain("in the new one");
    // switch_session takes a session id of the project as its `sessionPath`: the one get_state named.
    c.send({ id: "back", type: "switch_session", sessionPath: first });
    expect(await c.response("back")).toMatchObject({ success: true, data: { cancelled: false } });
    expect(await stateId("state-back")).toBe(session);
    c.send({ id: "t", type: "get_last_assistant_text" });
    expect((await c.response("t")).data).toEqual({ text: "over rpc" });
    c.send({ id: "bad", type: "switch_session", sessionPath: "/etc/passwd" });
    expect((await c.response("bad")).success).toBe(false);
    c.ws.close();
  });

  it("closes with 1008 when the key is revoked", async () => {
    const k = (await stack.call("POST", "/v1/admin/orgs/acme/keys", { role: "member" }, ADMIN)).json as {
      id: string;
      key: string;
    };
    const c = await connect(rpcUrl("rpcp", session), k.key);
    expect((await stack.call("DELETE", `/v1/admin/orgs/acme/keys/${k.id}`, undefined, ADMIN)).status).toBe(
      200,
    );
    expect((await c.closed).code).toBe(1008);
  });

  it("forwards extension UI requests and resolves them with extension_ui_response", async () => {
    const gate = fileURLToPath(new URL("../fixtures/extensions/permission-gate.ts", import.meta.url));
    const own = await startInProcessStack(inject("redisUrl"), "rpc-socket-ui", {
      env: { PI_EXTENSION_PATHS: gate },
    });
    try {
      await own.call("POST", "/v1/projects", { name: "g" });
      const id = ((await own.call("POST", "/v1/projects/g/sessions", {})).json as { id: string }).id;
      const c = await connect(`${own.gateway.url.replace("http", "ws")}/v1/projects/g/sessions/${id}/rpc`);
      c.send({ id: "p", type: "prompt", message: "[[bash:echo gated]]" });
      const dialog = await waitFor(
        () => c.records.find((r) => r.type === "extension_ui_request" && r.method === "confirm"),
        { timeoutMs: 20_000 },
      );
      expect(dialog).toMatchObject({ title: "Run bash?", message: "echo gated" });
      c.send({ type: "extension_ui_response", id: dialog.id, confirmed: true });
      await waitFor(() => c.records.find((r) => r.type === "agent_settled"), { timeoutMs: 20_000 });
      const notify = c.records.find((r) => r.type === "extension_ui_request" && r.method === "notify");
      expect(notify?.message).toBe("bash allowed: echo gated");
      const result = c.records.find((r) => r.type === "tool_execution_end");
      expect(JSON.stringify(result)).toContain("gated");
      // pi sends nothing back for an extension_ui_response, known id or not.
      c.send({ type: "extension_ui_response", id: "unknown-dialog", cancelled: true });
      c.send({ id: "after", type: "get_state" });
      await c.response("after");
      expect(c.records.filter((r) => r.type === "response").map((r) => r.id)).toEqual(["p", "after"]);
      c.ws.close();
    } finally {
      await own.close();
    }
  });

  it("closes with 1001 when the gateway shuts down", async () => {
    const own = await startInProcessStack(inject("redisUrl"), "rpc-socket-close");
    await own.call("POST", "/v1/projects", { name: "c" });
    const id = ((await own.call("POST", "/v1/projects/c/sessions", {})).json as { id: string }).id;
    const ws = new WebSocket(`${own.gateway.url.replace("http", "ws")}/v1/projects/c/sessions/${id}/rpc`);
    const closed = new Promise<number>((resolve) => ws.on("close", (code) => resolve(code)));
    await new Promise((resolve) => ws.once("open", resolve));
    await own.close();
    expect(await closed).toBe(1001);
  });
});

/** V8's message for a JSON.parse failure of `text` (the same engine as the gateway). */
function jsonError(text: string): string {
  try {
    JSON.parse(text);
    return "";
  } catch (err) {
    return (err as Error).message;
  }
}
