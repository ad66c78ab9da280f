// Extension UI across the fleet, with the permission-gate fixture as the operator's extension
// (PI_EXTENSION_PATHS) and two gateways on one worker: a bash tool call raises a confirm dialog as
// an `extension_ui_request` on the stream; it is pending in Redis (listed by any gateway, re-sent
// to SSE and WebSocket subscribers that connect after it); the first answer through either gateway
// resolves it and later ones get 409; a refusal blocks the tool; an unanswered dialog with a
// timeout resolves to pi's default; abort withdraws it; notify arrives as an event; and a
// project's own `.pi/extensions` never loads for the (untrusted) default org.
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadEnv, splitList } from "@pi-fleet/config";
import { type Gateway, startGateway } from "@pi-fleet/gateway";
import { createLogger } from "@pi-fleet/observability";
import { openSse, type SseConnection, type SseEvent, waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

const GATE = fileURLToPath(new URL("../fixtures/extensions/permission-gate.ts", import.meta.url));
const PROJECT = "gated";

let stack: InProcessStack;
let gatewayB: Gateway;
let session = "";
let projectDir = "";
let evilMarker = "";
const base = () => `/v1/projects/${PROJECT}/sessions/${session}`;

interface UiEvent {
  type: string;
  id: string;
  method: string;
  [key: string]: unknown;
}

async function callOn(url: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

const json = (e: SseEvent) => (e.json ?? {}) as Record<string, unknown>;
const isDialog = (e: SseEvent) => json(e).type === "extension_ui_request" && json(e).method === "confirm";

/** Prompts, then follows the session stream from the run's first offset until its first dialog. */
async function promptUntilDialog(
  text: string,
): Promise<{ runId: string; sse: SseConnection; dialog: SseEvent }> {
  const res = await stack.call("POST", `${base()}/prompt`, { text });
  expect(res.status).toBe(200);
  const { runId, offset } = res.json as { runId: string; offset: string };
  const sse = await openSse(`${stack.gateway.url}${base()}/events?after=${offset}`);
  const dialog = await sse.waitFor(isDialog, 20_000);
  return { runId, sse, dialog };
}

async function runEnded(sse: SseConnection, runId: string): Promise<string> {
  const end = await sse.waitFor(
    (e) =>
      ["run_finished", "run_failed", "run_aborted"].includes(String(json(e).type)) && json(e).runId === runId,
    20_000,
  );
  return String(json(end).type);
}

async function pending(url = stack.gateway.url): Promise<UiEvent[]> {
  const res = await callOn(url, "GET", `${base()}/extension-ui`);
  expect(res.status).toBe(200);
  return res.json.requests as UiEvent[];
}

beforeAll(async () => {
  const redisUrl = inject("redisUrl");
  stack = await startInProcessStack(redisUrl, "extui", { env: { PI_EXTENSION_PATHS: GATE } });
  // A second gateway on the same Redis and key prefix (a client may reach any gateway).
  gatewayB = await startGateway(
    loadEnv({
      REDIS_URL: redisUrl,
      PORT: "0",
      WORKSPACE_DIR: stack.workspace,
      PI_FLEET_KEY_PREFIX: stack.prefix,
      LOG_LEVEL: "warn",
    }),
    createLogger("test-b", "warn"),
  );
  expect((await stack.call("POST", "/v1/projects", { name: PROJECT })).status).toBeLessThan(300);
  // The tenant's own extension: it would leave a marker outside the project if it were ever loaded.
  projectDir = join(stack.workspace, "default", "projects", PROJECT);
  evilMarker = join(stack.workspace, "evil-extension-loaded");
  await mkdir(join(projectDir, ".pi", "extensions"), { recursive: true });
  await writeFile(
    join(projectDir, ".pi", "extensions", "evil.ts"),
    `import { writeFileSync } from "node:fs";
export default function evil() { writeFileSync(${JSON.stringify(evilMarker)}, "loaded"); }\n`,
  );
  session = ((await stack.call("POST", `/v1/projects/${PROJECT}/sessions`, {})).json as { id: string }).id;
});

afterAll(async () => {
  await gatewayB?.close();
  await stack?.close();
});

describe("extension UI", () => {
  it("raises a confirm dialog that any gateway lists, re-sends and answers once", async () => {
    const { runId, sse, dialog } = await promptUntilDialog("[[bash:echo ok > gate.txt]]");
    const request = json(dialog) as UiEvent;
    expect(request).toEqual({
      type: "extension_ui_request",
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      method: "confirm",
      title: "Run bash?",
      message: "echo ok > gate.txt",
    });
    expect(dialog.id).toMatch(/^\d+-\d+$/); // on the stream, with an offset

    // Listed by both gateways, exactly as it went onto the stream.
    expect(await pending()).toEqual([request]);
    expect(await pending(gatewayB.url)).toEqual([request]);

    // A subscriber whose cursor is already past the dialog still gets it, after its replay and
    // without an id; so does a WebSocket subscriber.
    const late = await openSse(`${gatewayB.url}${base()}/events`, { lastEventId: dialog.id! });
    const resent = await late.waitFor((e) => json(e).id === request.id, 5000);
    expect(resent.id).toBeUndefined();
    expect(json(resent)).toEqual(request);
    late.close();
    const ws = new WebSocket(`${gatewayB.url.replace("http", "ws")}/v1/ws`);
    const frames: Record<string, unknown>[] = [];
    ws.addEventListener("message", (m) => frames.push(JSON.parse(String(m.data)) as Record<string, unknown>));
    await new Promise((resolve) => ws.addEventListener("open", resolve));
    ws.send(JSON.stringify({ kind: "hello", protocol: 1 }));
    ws.send(JSON.stringify({ kind: "subscribe", projectId: PROJECT, sessionId: session, after: dialog.id }));
    const frame = await waitFor(() =>
      frames.find((f) => f.kind === "event" && (f.event as UiEvent).id === request.id),
    );
    expect(frame).toEqual({ kind: "event", projectId: PROJECT, sessionId: session, event: request });
    ws.close();

    // Gateway B answers; the bash command runs; a second answer (gateway A) is a conflict.
    const answer = await callOn(gatewayB.url, "POST", `${base()}/extension-ui/${request.id}/response`, {
      confirmed: true,
    });
    expect(answer).toEqual({ status: 200, json: { ok: true } });
    const again = await stack.call("POST", `${base()}/extension-ui/${request.id}/response`, {
      confirmed: false,
    });
    expect(again.status).toBe(409);
    expect((again.json as { code: string }).code).toBe("PF_ERR_UI_ALREADY_ANSWERED");

    expect(await runEnded(sse, runId)).toBe("run_finished");
    expect(existsSync(join(projectDir, "gate.txt"))).toBe(true);
    const notify = sse.events.map(json).find((e) => e.method === "notify");
    expect(notify).toMatchObject({
      type: "extension_ui_request",
      method: "notify",
      message: "bash allowed: echo ok > gate.txt",
      notifyType: "info",
    });
    expect(await pending()).toEqual([]);
    const unknown = await stack.call("POST", `${base()}/extension-ui/no-such-request/response`, {
      confirmed: true,
    });
    expect(unknown.status).toBe(404);
    expect((unknown.json as { code: string }).code).toBe("PF_ERR_UI_REQUEST_NOT_FOUND");
    sse.close();
  });

  it("blocks the tool when the answer is a refusal, also from a gateway started after the dialog", async () => {
    const { runId, sse, dialog } = await promptUntilDialog("[[bash:echo no > refused.txt]]");
    // A gateway that did not exist when the dialog was raised (a restart) lists and answers it.
    // (Closed only at the end: in-process gateways share the module-level set of open SSE streams.)
    const gatewayC = await startGateway(
      loadEnv({
        REDIS_URL: inject("redisUrl"),
        PORT: "0",
        WORKSPACE_DIR: stack.workspace,
        PI_FLEET_KEY_PREFIX: stack.prefix,
        LOG_LEVEL: "warn",
      }),
      createLogger("test-c", "warn"),
    );
    try {
      expect((await pending(gatewayC.url)).map((r) => r.id)).toEqual([json(dialog).id]);
      const answer = await callOn(
        gatewayC.url,
        "POST",
        `${base()}/extension-ui/${json(dialog).id}/response`,
        {
          confirmed: false,
        },
      );
      expect(answer.status).toBe(200);
      expect(await runEnded(sse, runId)).toBe("run_finished");
    } finally {
      await gatewayC.close();
    }
    expect(existsSync(join(projectDir, "refused.txt"))).toBe(false);
    const toolEnd = sse.events.map(json).find((e) => e.type === "tool_execution_end");
    expect(toolEnd?.isError).toBe(true);
    expect(JSON.stringify(toolEnd?.result)).toContain("Blocked by user");
    expect(sse.events.map(json).find((e) => e.method === "notify")).toMatchObject({
      message: "bash blocked: echo no > refused.txt",
      notifyType: "warning",
    });
    sse.close();
  });

  it("resolves an unanswered dialog with a timeout to pi's default and withdraws it", async () => {
    const { runId, sse, dialog } = await promptUntilDialog(
      "[[bash:echo slow > slow.txt # gate-timeout=300]]",
    );
    expect(json(dialog).timeout).toBe(300);
    expect(await runEnded(sse, runId)).toBe("run_finished");
    expect(existsSync(join(projectDir, "slow.txt"))).toBe(false);
    expect(await pending()).toEqual([]);
    // Too late: the timeout answered first.
    const late = await stack.call("POST", `${base()}/extension-ui/${json(dialog).id}/response`, {
      confirmed: true,
    });
    expect(late.status).toBe(409);
    sse.close();
  });

  it("withdraws a pending dialog when the run is aborted", async () => {
    const { runId, sse, dialog } = await promptUntilDialog("[[bash:echo x > aborted.txt]]");
    const abort = await stack.call("POST", `${base()}/abort`, {});
    expect(abort.json).toMatchObject({ ok: true, aborted: true, runId });
    expect(await runEnded(sse, runId)).toBe("run_aborted");
    expect(await pending()).toEqual([]);
    expect(existsSync(join(projectDir, "aborted.txt"))).toBe(false);
    const late = await stack.call("POST", `${base()}/extension-ui/${json(dialog).id}/response`, {
      confirmed: true,
    });
    expect(late.status).toBe(409);
    sse.close();
  });

  it("never loads the project's own .pi/extensions for an untrusted org", async () => {
    // Sessions of this project were opened (and the operator's gate loaded) by the tests above.
    expect(existsSync(join(projectDir, "gate.txt"))).toBe(true);
    expect(existsSync(evilMarker)).toBe(false);
    const messages = await stack.call("GET", base());
    expect(JSON.stringify(messages.json)).not.toContain("evil");
  });
});

describe("resource policy configuration", () => {
  it("reads the operator's paths and switches, and refuses relative paths and bad org ids", () => {
    const env = loadEnv({
      PI_EXTENSION_PATHS: `${GATE}, /opt/pi/ext`,
      PI_SKILL_PATHS: "/opt/pi/skills",
      PI_NO_PROMPT_TEMPLATES: "true",
      PI_FLEET_TRUSTED_ORGS: "acme,default",
    });
    expect(splitList(env.PI_EXTENSION_PATHS)).toEqual([GATE, "/opt/pi/ext"]);
    expect(splitList(env.PI_PROMPT_PATHS)).toEqual([]);
    expect([env.PI_NO_EXTENSIONS, env.PI_NO_SKILLS, env.PI_NO_PROMPT_TEMPLATES]).toEqual([
      false,
      false,
      true,
    ]);
    expect(splitList(env.PI_FLEET_TRUSTED_ORGS)).toEqual(["acme", "default"]);
    expect(splitList(loadEnv({}).PI_FLEET_TRUSTED_ORGS)).toEqual([]);
    expect(() => loadEnv({ PI_SKILL_PATHS: "skills" })).toThrow(
      "invalid configuration: PI_SKILL_PATHS must be comma-separated absolute paths",
    );
    expect(() => loadEnv({ PI_FLEET_TRUSTED_ORGS: "Acme Corp" })).toThrow(/PI_FLEET_TRUSTED_ORGS/);
    expect(() => loadEnv({ PI_NO_SKILLS: "maybe" })).toThrow(/PI_NO_SKILLS/);
  });
});
