// Control from the gateway to the project's owner: commands (with an owner on demand; each
// command's own fields validated, 400 naming the path; sessions named by their fleet ids in
// answers), steer and follow-up into a running run (or as a prompt when idle), abort with
// cancelQueued, and 409 for settings changes while a run is active.
import { openSse, waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

let stack: InProcessStack;
let session = "";
const base = () => `/v1/projects/ctl/sessions/${session}`;

interface Run {
  status: string;
}

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "control", {
    env: { PI_FLEET_IDLE_RELEASE_MS: "300" },
  });
  await stack.call("POST", "/v1/projects", { name: "ctl" });
  session = ((await stack.call("POST", "/v1/projects/ctl/sessions", {})).json as { id: string }).id;
});

afterAll(async () => {
  await stack?.close();
});

async function runStatus(runId: string): Promise<string> {
  return ((await stack.call("GET", `${base()}/runs/${runId}`)).json as Run).status;
}

describe("control", () => {
  it("answers commands on a project nobody owns by taking an owner on demand", async () => {
    const worker = stack.workers[0]!;
    await waitFor(() => worker.ownership.runner("default", "ctl") === undefined, { timeoutMs: 5000 });
    const named = await stack.call("POST", `${base()}/commands`, {
      type: "set_session_name",
      name: "my session",
    });
    expect(named).toEqual({ status: 200, json: { type: "set_session_name", success: true } });
    const state = await stack.call("POST", `${base()}/commands`, { type: "get_state" });
    expect(state.status).toBe(200);
    const data = (state.json as { data: Record<string, unknown> }).data;
    expect(data.sessionName).toBe("my session");
    expect(data.isStreaming).toBe(false);
    expect(JSON.stringify(state.json)).not.toContain(stack.workspace);
    // pi's events of a command between runs are on the session stream too ("every event").
    const sse = await openSse(`${stack.gateway.url}${base()}/events?after=0`);
    try {
      await stack.call("POST", `${base()}/commands`, { type: "set_session_name", name: "renamed" });
      const changed = await sse.waitFor(
        (e) => JSON.stringify(e.json) === JSON.stringify({ type: "session_info_changed", name: "renamed" }),
        10_000,
      );
      // The first rename, replayed from the stream (after=0), came before it.
      expect(sse.events.map((e) => e.json)).toEqual([
        { type: "session_info_changed", name: "my session" },
        changed.json,
      ]);
    } finally {
      sse.close();
    }
    const unknown = await stack.call("POST", `${base()}/commands`, { type: "no_such_command" });
    expect(unknown.status).toBe(400);
    expect((unknown.json as { error: string }).error).toBe("Unknown command: no_such_command");
  });

  it("checks each command's own fields: an unknown field or a wrong type is a 400 naming the path", async () => {
    const post = (body: unknown, path = base()) => stack.call("POST", `${path}/commands`, body);
    const invalid = (error: string, details: unknown[]) => ({
      status: 400,
      json: { error, code: "PF_ERR_REQUEST_INVALID", details },
    });
    expect(await post({ type: "get_state", sessionFile: "/etc/passwd" })).toEqual(
      invalid("body must NOT have additional properties", [
        { path: "body", message: "must NOT have additional properties", field: "sessionFile" },
      ]),
    );
    expect(await post({ type: "set_session_name", name: 5 })).toEqual(
      invalid("body/name must be string", [{ path: "body/name", message: "must be string" }]),
    );
    expect(await post({ type: "set_model", provider: "fake" })).toEqual(
      invalid("body must have required property 'modelId'", [
        { path: "body", message: "must have required property 'modelId'" },
      ]),
    );
    expect(await post({ type: "set_auto_compaction", enabled: "true" })).toEqual(
      invalid("body/enabled must be boolean", [{ path: "body/enabled", message: "must be boolean" }]),
    );
    const mode = await post({ type: "set_steering_mode", mode: "sometimes" });
    expect(mode.status).toBe(400);
    expect(mode.json).toMatchObject({
      error: 'body/mode must be equal to one of the allowed values: "all", "one-at-a-time"',
      details: [{ path: "body/mode", allowedValues: ["all", "one-at-a-time"] }],
    });
    // Arguments of another command are unknown fields too (fork's entryId on clone).
    expect((await post({ type: "clone", entryId: "x" })).status).toBe(400);
    // The body is checked before the session is looked up, as on every route.
    expect(
      (await post({ type: "get_state", x: 1 }, "/v1/projects/ctl/sessions/no-such-session")).status,
    ).toBe(400);
    // pi's request id is accepted (a pi client's JSON posts unchanged), a non-string one is not.
    expect(await post({ id: "req-1", type: "set_session_name", name: "with id" })).toEqual({
      status: 200,
      json: { type: "set_session_name", success: true },
    });
    expect((await post({ id: 1, type: "get_state" })).status).toBe(400);
    // Refused bodies changed nothing; a type without a schema is still the worker's to refuse.
    const state = await post({ type: "get_state" });
    expect((state.json as { data: { sessionName?: string } }).data.sessionName).toBe("with id");
    const proto = await post({ type: "__proto__" });
    expect(proto.json).toEqual({
      error: "Unknown command: __proto__",
      code: "PF_ERR_COMMAND_UNSUPPORTED",
    });
  });

  it("reads an optional field that is null as absent, as the worker and the RPC socket do; a null required one is a 400", async () => {
    const post = (body: unknown) => stack.call("POST", `${base()}/commands`, body);
    const succeeds = (type: string) => ({ status: 200, json: { type, success: true } });
    expect(await post({ type: "get_state", id: null })).toMatchObject(succeeds("get_state"));
    const all = await post({ type: "get_entries" });
    expect(await post({ type: "get_entries", since: null })).toEqual(all);
    // As without outputPath (pi's "Nothing to export yet" here), not the refusal of a path.
    const exported = await post({ type: "export_html", outputPath: null });
    expect(exported).toEqual(await post({ type: "export_html" }));
    expect(exported.status).toBe(200);
    expect(
      await post({ type: "bash", command: "echo null-exclude", excludeFromContext: null }),
    ).toMatchObject({
      ...succeeds("bash"),
      json: { data: { output: "null-exclude\n", exitCode: 0 } },
    });
    // compact reaches the worker (pi's answer, whatever it is), not the schema's 400.
    expect(await post({ type: "compact", customInstructions: null })).toMatchObject({
      status: 200,
      json: { type: "compact" },
    });
    const created = await post({ type: "new_session", parentSession: null });
    expect(created).toMatchObject({ ...succeeds("new_session"), json: { data: { cancelled: false } } });
    // Required fields stay required: null is not a name.
    expect(await post({ type: "set_session_name", name: null })).toEqual({
      status: 400,
      json: {
        error: "body/name must be string",
        code: "PF_ERR_REQUEST_INVALID",
        details: [{ path: "body/name", message: "must be string" }],
      },
    });
    expect((await post({ type: "set_auto_retry", enabled: null })).status).toBe(400);
  });

  it("puts no length limit on pi's arguments beyond the session name's: pi's answers and texts instead", async () => {
    const post = (body: unknown) => stack.call("POST", `${base()}/commands`, body);
    const refused = (type: string, error: string) => ({ status: 200, json: { type, success: false, error } });
    // The one fleet limit: a session name is listed and carried into forks' and clones' names, so at
    // most 200 characters once trimmed, as at creation (pi has none).
    // Characters are code points, as the schemas count them: 200 emoji (400 UTF-16 units) are fine.
    const emoji = "😀".repeat(200);
    expect((await post({ type: "set_session_name", name: emoji })).status).toBe(200);
    expect(
      ((await post({ type: "get_state" })).json as { data: { sessionName?: string } }).data.sessionName,
    ).toBe(emoji);
    const long = "n".repeat(201);
    expect(await post({ type: "set_session_name", name: long })).toEqual(
      refused("set_session_name", "Session name too long: at most 200 characters"),
    );
    // pi trims the name: a 199-character name with blanks around it is a 199-character name.
    const padded = "p".repeat(199);
    expect((await post({ type: "set_session_name", name: `  ${padded}  ` })).status).toBe(200);
    expect(
      ((await post({ type: "get_state" })).json as { data: { sessionName?: string } }).data.sessionName,
    ).toBe(padded);
    const entry = "e".repeat(129);
    expect(await post({ type: "fork", entryId: entry })).toEqual(
      refused("fork", "Invalid entry ID for forking"),
    );
    expect(await post({ type: "get_entries", since: entry })).toEqual(
      refused("get_entries", `Entry not found: ${entry}`),
    );
    const provider = "p".repeat(65);
    const modelId = "m".repeat(201);
    expect(await post({ type: "set_model", provider, modelId })).toEqual(
      refused("set_model", `Model not found: ${provider}/${modelId}`),
    );
    // Empty arguments are pi's to answer too, with pi's texts (an empty bash runs, as in pi).
    expect(await post({ type: "set_model", provider: "", modelId: "x" })).toEqual(
      refused("set_model", "Model not found: /x"),
    );
    expect(await post({ type: "fork", entryId: "" })).toEqual(
      refused("fork", "Invalid entry ID for forking"),
    );
    expect(await post({ type: "bash", command: "" })).toMatchObject({
      status: 200,
      json: { type: "bash", success: true, data: { exitCode: 0 } },
    });
    // pi's request id: any length, except on bash, whose output events all carry it.
    expect(await post({ type: "get_state", id: "i".repeat(500) })).toMatchObject({
      status: 200,
      json: { type: "get_state", success: true },
    });
    expect(await post({ type: "bash", id: "i".repeat(129), command: "echo" })).toEqual({
      status: 400,
      json: {
        error: "body/id must NOT have more than 128 characters",
        code: "PF_ERR_REQUEST_INVALID",
        details: [{ path: "body/id", message: "must NOT have more than 128 characters" }],
      },
    });
  });

  it("names sessions by their fleet id in command answers, never by pi's header id", async () => {
    type Answer = { data: Record<string, unknown> };
    const command = async (path: string, body: Record<string, unknown>) => {
      const res = await stack.call("POST", `${path}/commands`, body);
      expect(res.status).toBe(200);
      return (res.json as Answer).data;
    };
    expect((await command(base(), { type: "get_state" })).sessionId).toBe(session);
    expect((await command(base(), { type: "get_session_stats" })).sessionId).toBe(session);
    // new_session names the new fleet session; that session's get_state names it the same way.
    const created = await command(base(), { type: "new_session" });
    expect(created).toMatchObject({ cancelled: false, sessionId: expect.any(String) });
    const next = created.sessionId as string;
    expect(next).not.toBe(session);
    const other = `/v1/projects/ctl/sessions/${next}`;
    expect((await command(other, { type: "get_state" })).sessionId).toBe(next);
    expect((await command(base(), { type: "get_state" })).sessionId).toBe(session);
  });

  it("steers a running run, blocks settings changes with 409 while it runs, and aborts with cancelQueued", async () => {
    const long = await stack.call("POST", `${base()}/prompt`, {
      text: "[[delay:20]] [[deltas:200]] [[tag:long]]",
    });
    const { runId, offset } = long.json as { runId: string; offset: string };
    const queued = await stack.call("POST", `${base()}/prompt`, { text: "[[reply:queued]]" });
    const queuedRun = (queued.json as { runId: string }).runId;
    const sse = await openSse(`${stack.gateway.url}${base()}/events?after=${offset}`);
    await sse.waitFor((e) => (e.json as { type?: string })?.type === "message_update", 10_000);

    const patch = await stack.call("PATCH", `${base()}/settings`, { thinkingLevel: "low" });
    expect(patch.status).toBe(409);
    expect((patch.json as { code: string }).code).toBe("PF_ERR_SESSION_BUSY");
    const compact = await stack.call("POST", `${base()}/commands`, { type: "compact" });
    expect(compact.status).toBe(409);

    const steer = await stack.call("POST", `${base()}/steer`, { text: "please hurry" });
    expect(steer.json).toMatchObject({ ok: true, delivered: "steer", runId });
    await sse.waitFor((e) => (e.json as { type?: string })?.type === "queue_update", 10_000);

    const abort = await stack.call("POST", `${base()}/abort`, { cancelQueued: true });
    expect(abort.json).toMatchObject({ ok: true, aborted: true, runId, cancelled: 1 });
    await waitFor(async () => (await runStatus(runId)) === "aborted", { timeoutMs: 10_000 });
    expect(await runStatus(queuedRun)).toBe("cancelled");
    await sse.waitFor((e) => (e.json as { type?: string })?.type === "run_aborted", 10_000);
    const types = sse.events.map((e) => (e.json as { type: string }).type);
    expect(types.filter((t) => t === "run_aborted")).toHaveLength(1);
    expect(types).toContain("run_cancelled");
    expect(types).not.toContain("run_finished");
    sse.close();

    const idle = await stack.call("POST", `${base()}/abort`);
    expect(idle.json).toEqual({ ok: true, aborted: false, cancelled: 0 });
  });

  it("turns a follow-up on an idle session into a prompt", async () => {
    await waitFor(async () => {
      const state = (await stack.call("GET", `${base()}/state`)).json as { status: string };
      return state.status === "idle";
    });
    const res = await stack.call("POST", `${base()}/follow_up`, { text: "[[reply:follow]]" });
    const body = res.json as { delivered: string; runId: string };
    expect(body.delivered).toBe("prompt");
    await waitFor(async () => (await runStatus(body.runId)) === "finished", { timeoutMs: 10_000 });
    const last = await stack.call("POST", `${base()}/commands`, { type: "get_last_assistant_text" });
    expect(last.json).toEqual({ type: "get_last_assistant_text", success: true, data: { text: "follow" } });
  });

  it("answers 404 for an extension UI request that is not pending", async () => {
    const list = await stack.call("GET", `${base()}/extension-ui`);
    expect(list.json).toEqual({ requests: [] });
    const answer = await stack.call("POST", `${base()}/extension-ui/abc123/response`, { confirmed: true });
    expect(answer.status).toBe(404);
  });
});
