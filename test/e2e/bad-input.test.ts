// Hostile and broken input against a real single-node process: every bad request gets the right
// 4xx with the error shape `{error, code: "PF_ERR_…"}` (never a 500, never a 200), path ids that
// try to traverse are refused, and afterwards the workspace holds only what valid requests made.

import { readdir } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { type FakeLlm, startFakeLlm, uniquePrefix } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  api,
  createProject,
  createSession,
  type ErrorBody,
  prompt,
  rawRequest,
  registerFakeProvider,
  waitForRunEnd,
} from "../support/http.ts";
import { type Stack, startStack, stopAllStacks } from "../support/stack.ts";

const MAX_BODY = 4096;
const MAX_PROMPT = 1000;
const MAX_IMAGE = 1024;

let llm: FakeLlm;
let stack: Stack;
let sid: string;
let runId: string;
let otherSid: string;
/** Every status seen, for the final "never a 5xx" check. */
const seen: { what: string; status: number }[] = [];

beforeAll(async () => {
  llm = await startFakeLlm();
  stack = await startStack({
    redisUrl: inject("redisUrl"),
    prefix: uniquePrefix("e2e bad input"),
    env: {
      PI_FLEET_MAX_BODY_BYTES: String(MAX_BODY),
      PI_FLEET_MAX_PROMPT_CHARS: String(MAX_PROMPT),
      PI_FLEET_MAX_IMAGE_BYTES: String(MAX_IMAGE),
      PI_FLEET_MAX_IMAGES: "2",
    },
  });
  await registerFakeProvider(stack.url, llm);
  expect(await createProject(stack.url, "Valid")).toBe("valid");
  sid = await createSession(stack.url, "valid");
  otherSid = await createSession(stack.url, "valid");
  // One valid run, so the workspace has the project's directories and a transcript.
  const p = await prompt(stack.url, "valid", sid, "[[reply:fine]]");
  runId = p.runId;
  expect((await waitForRunEnd(stack.url, "valid", sid, runId)).status).toBe("finished");
});

afterAll(async () => {
  await stopAllStacks();
  await llm?.close();
});

/** Asserts an error answer: `status`, `{error: string, code: /^PF_ERR_/}` and `code` if given. */
function expectError(
  what: string,
  res: { status: number; json: unknown; text: string },
  status: number | number[],
  code?: string,
): ErrorBody {
  seen.push({ what, status: res.status });
  const statuses = Array.isArray(status) ? status : [status];
  expect(statuses, `${what}: status ${res.status} body ${res.text}`).toContain(res.status);
  const body = res.json as ErrorBody;
  expect(typeof body, `${what}: JSON error body, got ${res.text}`).toBe("object");
  expect(body.error, `${what}: error message`).toBeTypeOf("string");
  expect(body.code, `${what}: error code`).toMatch(/^PF_ERR_[A-Z_]+$/);
  if (code) expect(body.code, `${what}: ${res.text}`).toBe(code);
  expect(res.text, `${what}: no stack trace`).not.toMatch(/\n\s+at |node:internal|\.ts:\d+/);
  return body;
}

const promptPath = () => `/v1/projects/valid/sessions/${sid}/prompt`;

describe("bad input", () => {
  it("rejects unknown body fields with 400 naming the field", async () => {
    const http = api(stack.url);
    const cases: [string, string, unknown, string][] = [
      ["POST", "/v1/projects", { name: "Whatever", extraField: 1 }, "extraField"],
      ["POST", promptPath(), { text: "hi", bogusField: true }, "bogusField"],
      ["POST", "/v1/projects/valid/sessions", { name: "n", colour: "red" }, "colour"],
      ["PATCH", `/v1/projects/valid/sessions/${sid}/settings`, { thinkingLevel: "off", turbo: 1 }, "turbo"],
      [
        "PUT",
        "/v1/custom/providers",
        {
          provider: "other",
          baseUrl: llm.baseUrl,
          api: "openai-completions",
          models: [{ id: "m", secretSauce: 1 }],
        },
        "secretSauce",
      ],
    ];
    for (const [method, path, body, field] of cases) {
      const res = await http.send(method, path, {
        headers: { "content-type": "application/json" },
        rawBody: JSON.stringify(body),
      });
      const err = expectError(`${method} ${path} +${field}`, res, 400, "PF_ERR_REQUEST_INVALID");
      expect(JSON.stringify(err), `names ${field}`).toContain(field);
    }
  });

  it("rejects wrong types, missing fields and non-object bodies with 400", async () => {
    const http = api(stack.url);
    const cases: [string, string, string][] = [
      ["POST", promptPath(), '{"text":123}'],
      ["POST", promptPath(), '{"text":["a"]}'],
      ["POST", promptPath(), '{"text":null}'],
      ["POST", promptPath(), '{"text":""}'],
      ["POST", promptPath(), "{}"],
      ["POST", promptPath(), "[]"],
      ["POST", promptPath(), '"text"'],
      ["POST", promptPath(), "null"],
      ["POST", promptPath(), '{"text":"hi","images":[{"data":"%%%%","mimeType":"image/png"}]}'],
      ["POST", promptPath(), '{"text":"hi","images":[{"data":"QUFB","mimeType":"text/html"}]}'],
      ["POST", promptPath(), '{"text":"hi","streamingBehavior":"later"}'],
      ["POST", "/v1/projects", '{"name":42}'],
      ["POST", "/v1/projects", '{"name":""}'],
      ["POST", "/v1/projects", '{"name":"ok","deployment":{"dev":{"port":"80"}}}'],
      ["POST", "/v1/projects/valid/sessions", '{"thinkingLevel":"ultra"}'],
      ["POST", "/v1/projects/valid/sessions", '{"name":7}'],
      ["POST", "/v1/projects/valid/sessions", "null"],
      [
        "PUT",
        "/v1/custom/providers",
        '{"provider":"x","baseUrl":"file:///etc/passwd","api":"openai-completions","models":[{"id":"m"}]}',
      ],
    ];
    for (const [method, path, raw] of cases) {
      const res = await http.send(method, path, {
        headers: { "content-type": "application/json" },
        rawBody: raw,
      });
      expectError(`${method} ${path} ${raw}`, res, 400);
    }
    // A name that slugifies to nothing.
    expectError(
      "punctuation name",
      await http.post("/v1/projects", { name: "!!!" }),
      400,
      "PF_ERR_PROJECT_NAME_INVALID",
    );
  });

  it("names the allowed values of an enum or a constant", async () => {
    const http = api(stack.url);
    const cases: [string, string, string, string, string][] = [
      [
        "POST",
        "/v1/projects/valid/sessions",
        '{"thinkingLevel":"ultra"}',
        "body/thinkingLevel",
        'must be equal to one of the allowed values: "off", "minimal", "low", "medium", "high", "xhigh"',
      ],
      [
        "POST",
        promptPath(),
        '{"text":"hi","streamingBehavior":"later"}',
        "body/streamingBehavior",
        'must be equal to one of the allowed values: "steer", "followUp"',
      ],
      [
        "POST",
        promptPath(),
        '{"text":"hi","images":[{"type":"file","data":"QUFB","mimeType":"image/png"}]}',
        "body/images/0/type",
        'must be equal to constant "image"',
      ],
    ];
    for (const [method, path, raw, where, message] of cases) {
      const res = await http.send(method, path, {
        headers: { "content-type": "application/json" },
        rawBody: raw,
      });
      const err = expectError(`${method} ${path} ${raw}`, res, 400, "PF_ERR_REQUEST_INVALID");
      expect(err.error).toBe(`${where} ${message}`);
      expect(err.details).toEqual([expect.objectContaining({ path: where, message })]);
    }
  });

  it("rejects malformed JSON with 400 and non-JSON content types with 415", async () => {
    const http = api(stack.url);
    for (const raw of ['{"text":', "{text: 'hi'}", '{"text":"hi"}}', "\u0000"]) {
      const res = await http.send("POST", promptPath(), {
        headers: { "content-type": "application/json" },
        rawBody: raw,
      });
      expectError(`malformed ${JSON.stringify(raw)}`, res, 400, "PF_ERR_REQUEST_MALFORMED_JSON");
    }
    const empty = await http.send("POST", promptPath(), {
      headers: { "content-type": "application/json" },
      rawBody: "",
    });
    expectError("empty JSON body", empty, 400);

    for (const type of [
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
    ]) {
      const res = await http.send("POST", promptPath(), {
        headers: { "content-type": type },
        rawBody: type.startsWith("application/x") ? "text=hi" : '{"text":"hi"}',
      });
      expectError(`content-type ${type}`, res, 415, "PF_ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE");
    }
    const projectAsText = await http.send("POST", "/v1/projects", {
      headers: { "content-type": "text/plain" },
      rawBody: '{"name":"Sneaky"}',
    });
    expectError("project as text/plain", projectAsText, 415);
  });

  it("rejects bodies over PI_FLEET_MAX_BODY_BYTES and prompts over PI_FLEET_MAX_PROMPT_CHARS with 413", async () => {
    const http = api(stack.url);
    const huge = await http.post(promptPath(), { text: "x".repeat(MAX_BODY + 100) });
    expectError("body over the byte limit", huge, 413, "PF_ERR_REQUEST_TOO_LARGE");
    const hugeProject = await http.post("/v1/projects", {
      name: "a".repeat(100),
      deployment: { dev: { url: "u".repeat(MAX_BODY) } },
    });
    expectError("project body over the byte limit", hugeProject, 413, "PF_ERR_REQUEST_TOO_LARGE");

    const long = await http.post(promptPath(), { text: "y".repeat(MAX_PROMPT + 1) });
    expect(JSON.stringify({ text: "y".repeat(MAX_PROMPT + 1) }).length).toBeLessThan(MAX_BODY);
    expectError("prompt over the char limit", long, 413, "PF_ERR_REQUEST_TOO_LARGE");
    // Characters, not bytes: 1001 two-byte characters are over the limit too.
    const wide = await http.post(promptPath(), { text: "é".repeat(MAX_PROMPT + 1) });
    expectError("prompt of wide chars over the char limit", wide, 413, "PF_ERR_REQUEST_TOO_LARGE");

    // Prompt (steer, follow-up) bodies may also hold PI_FLEET_MAX_IMAGES base64 images of
    // PI_FLEET_MAX_IMAGE_BYTES on top of MAX_BODY; past that the body itself is refused.
    const image = (bytes: number) => ({
      data: Buffer.alloc(bytes, 1).toString("base64"),
      mimeType: "image/png",
    });
    const pastImages = await http.post(promptPath(), { text: "hi", images: [image(3 * MAX_BODY)] });
    expectError("prompt body past the image allowance", pastImages, 413, "PF_ERR_REQUEST_TOO_LARGE");
    const bigImage = await http.post(promptPath(), { text: "hi", images: [image(MAX_IMAGE + 1)] });
    expectError("image over PI_FLEET_MAX_IMAGE_BYTES", bigImage, 413, "PF_ERR_REQUEST_TOO_LARGE");
    const threeImages = await http.post(promptPath(), { text: "hi", images: [image(8), image(8), image(8)] });
    expectError("more than PI_FLEET_MAX_IMAGES", threeImages, 413, "PF_ERR_REQUEST_TOO_LARGE");

    const tooLongKey = await http.post(promptPath(), { text: "hi" }, { "Idempotency-Key": "k".repeat(201) });
    expectError("Idempotency-Key too long", tooLongKey, 400, "PF_ERR_REQUEST_INVALID");
  });

  it("refuses ids with .., %2F, /, NUL or uppercase (400, never 200 or 500)", async () => {
    const paths: [string, string][] = [
      ["GET", "/v1/projects/.."],
      ["GET", "/v1/projects/%2E%2E"],
      ["GET", "/v1/projects/..%2F..%2Fetc"],
      ["GET", "/v1/projects/..%2fvalid/sessions"],
      ["POST", "/v1/projects/%2E%2E%2F%2E%2E/sessions"],
      ["DELETE", "/v1/projects/%2E%2E"],
      ["DELETE", "/v1/projects/valid%2F..%2F.."],
      ["GET", "/v1/projects/valid%2Fsessions"],
      ["GET", "/v1/projects/valid/sessions/.."],
      ["GET", "/v1/projects/valid/sessions/..%2F..%2F..%2Fetc%2Fpasswd"],
      ["GET", "/v1/projects/valid/sessions/..%2F..%2Fsessions%2Fvalid/events"],
      ["POST", `/v1/projects/valid/sessions/..%2F${sid}/prompt`],
      ["DELETE", "/v1/projects/valid/sessions/%2E%2E"],
      ["GET", `/v1/projects/valid/sessions/${sid}/runs/..%2F..`],
      ["GET", "/v1/projects/valid%00"],
      ["GET", "/v1/projects/valid%00/sessions"],
      ["GET", `/v1/projects/valid/sessions/${sid}%00/events`],
      ["POST", `/v1/projects/valid/sessions/${sid}%00x/prompt`],
      ["GET", "/v1/projects/Valid"],
      ["GET", "/v1/projects/VALID/sessions"],
      ["POST", "/v1/projects/Valid/sessions"],
      ["GET", `/v1/projects/valid/sessions/${sid.toUpperCase()}`],
      ["POST", `/v1/projects/valid/sessions/${sid.toUpperCase()}/prompt`],
      ["GET", `/v1/projects/valid/sessions/${sid}/runs/${runId.toUpperCase()}`],
      ["GET", "/v1/projects/-leading-dash"],
      ["GET", `/v1/projects/${"a".repeat(64)}`],
    ];
    for (const [method, path] of paths) {
      const isPrompt = path.endsWith("/prompt");
      const res = await rawRequest(stack.url, method, path, {
        ...(isPrompt
          ? { headers: { "content-type": "application/json" }, body: '{"text":"[[reply:no]]"}' }
          : {}),
      });
      expectError(`${method} ${path}`, res, 400, "PF_ERR_REQUEST_INVALID");
    }
    // A literal "/" inside an id splits the path into one no route matches.
    for (const [method, path] of [
      ["GET", "/v1/projects/valid/sessions/a/b"],
      ["GET", `/v1/projects/valid/sessions/${sid}/x/events`],
      ["POST", `/v1/projects/valid/sessions/../../${sid}/prompt`],
    ] as const) {
      const res = await rawRequest(stack.url, method, path, {
        headers: { "content-type": "application/json" },
        ...(method === "POST" ? { body: '{"text":"[[reply:no]]"}' } : {}),
      });
      expectError(`${method} ${path}`, res, [400, 404]);
    }
    // The project name is free text: traversal in it only ever yields a slug under the workspace.
    const evil = await api(stack.url).post<{ id: string; projectDir: string }>("/v1/projects", {
      name: "../../Evil/..",
    });
    expect(evil.status).toBe(200);
    expect(evil.json.id).toBe("evil");
    expect(evil.json.projectDir).toBe(join(stack.workspaceDir, "default", "projects", "evil"));
  });

  it("answers 404 {error, code} for unknown projects, sessions, runs and routes", async () => {
    const http = api(stack.url);
    const cases: [string, string, string, unknown?][] = [
      ["GET", "/v1/projects/nope", "PF_ERR_PROJECT_NOT_FOUND"],
      ["DELETE", "/v1/projects/nope", "PF_ERR_PROJECT_NOT_FOUND"],
      ["GET", "/v1/projects/nope/sessions", "PF_ERR_PROJECT_NOT_FOUND"],
      ["POST", "/v1/projects/nope/sessions", "PF_ERR_PROJECT_NOT_FOUND"],
      ["GET", `/v1/projects/nope/sessions/${sid}`, "PF_ERR_PROJECT_NOT_FOUND"],
      ["GET", "/v1/projects/valid/sessions/nope", "PF_ERR_SESSION_NOT_FOUND"],
      ["DELETE", "/v1/projects/valid/sessions/nope", "PF_ERR_SESSION_NOT_FOUND"],
      ["POST", "/v1/projects/valid/sessions/nope/prompt", "PF_ERR_SESSION_NOT_FOUND", { text: "hi" }],
      ["GET", "/v1/projects/valid/sessions/nope/state", "PF_ERR_SESSION_NOT_FOUND"],
      ["GET", "/v1/projects/valid/sessions/nope/events", "PF_ERR_SESSION_NOT_FOUND"],
      ["GET", `/v1/projects/valid/sessions/${sid}/runs/nope`, "PF_ERR_RUN_NOT_FOUND"],
      // A run that exists, asked for under another session of the project.
      ["GET", `/v1/projects/valid/sessions/${otherSid}/runs/${runId}`, "PF_ERR_RUN_NOT_FOUND"],
      ["GET", "/v1/nope", "PF_ERR_ROUTE_NOT_FOUND"],
      ["POST", "/v1/projects/valid/sessions/nope/teleport", "PF_ERR_ROUTE_NOT_FOUND", {}],
    ];
    for (const [method, path, code, body] of cases) {
      const res =
        body === undefined
          ? await http.send(method, path, {})
          : await http.send(method, path, {
              headers: { "content-type": "application/json" },
              rawBody: JSON.stringify(body),
            });
      expectError(`${method} ${path}`, res, 404, code);
    }
  });

  it("rejects an invalid Last-Event-ID or ?after= with 400", async () => {
    const events = `/v1/projects/valid/sessions/${sid}/events`;
    // The last two match the pattern but exceed Redis's 64-bit entry id parts.
    for (const bad of [
      "abc",
      "1-2-3",
      "-1",
      "1-",
      "../1-0",
      "1-0 OR 1=1",
      "9".repeat(21) + "-0",
      "1-99999999999999999999",
      "18446744073709551616-0",
    ]) {
      const res = await rawRequest(stack.url, "GET", events, {
        headers: { accept: "text/event-stream", "last-event-id": bad },
      });
      expectError(`Last-Event-ID ${bad}`, res, 400, "PF_ERR_STREAM_CURSOR_INVALID");
      const viaQuery = await rawRequest(stack.url, "GET", `${events}?after=${encodeURIComponent(bad)}`, {
        headers: { accept: "text/event-stream" },
      });
      expectError(`?after=${bad}`, viaQuery, 400);
    }
    const unknownQuery = await rawRequest(stack.url, "GET", `${events}?after=0&evil=1`, {
      headers: { accept: "text/event-stream" },
    });
    expectError("unknown query parameter", unknownQuery, 400, "PF_ERR_REQUEST_INVALID");
  });

  it("is still healthy, never answered 5xx, and wrote nothing for bad requests", async () => {
    const http = api(stack.url);
    const health = await http.get("/v1/healthz");
    expect(health.status).toBe(200);
    expect(health.json).toMatchObject({ ok: true });
    expect((await http.get("/v1/readyz")).status).toBe(200);
    expect(seen.length).toBeGreaterThan(80);
    expect(seen.filter((s) => s.status >= 500 || s.status < 400)).toEqual([]);

    // Only the valid requests left traces: projects "valid" and "evil" (no run, so no dirs).
    const projects = await http.get<{ projects: { id: string }[] }>("/v1/projects");
    expect(projects.json.projects.map((p) => p.id).sort()).toEqual(["evil", "valid"]);
    const sessions = await http.get<{ sessions: { id: string }[] }>("/v1/projects/valid/sessions");
    expect(sessions.json.sessions.map((s) => s.id).sort()).toEqual([sid, otherSid].sort());
    // The one valid run is the only run.
    const state = await http.get<{ status: string; queueLength: number }>(
      `/v1/projects/valid/sessions/${sid}/state`,
    );
    expect(state.json).toMatchObject({ status: "idle", queueLength: 0 });
    expect(llm.requests).toHaveLength(1);

    const tree = await listTree(stack.workspaceDir);
    expect(tree).toEqual(
      [
        "default/",
        "default/projects/",
        "default/projects/valid/",
        "default/sessions/",
        "default/sessions/valid/",
        `default/sessions/valid/${sid}.jsonl`,
      ].sort(),
    );
    // Nothing escaped next to the workspace either (the worker's private dirs only).
    const root = resolve(stack.workspaceDir, "..");
    expect((await readdir(root)).sort()).toEqual([".agents", "home", "workspace"]);
  });
});

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(d: string): Promise<void> {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const full = join(d, entry.name);
      const rel = relative(dir, full);
      if (entry.isDirectory()) {
        out.push(`${rel}/`);
        await walk(full);
      } else {
        out.push(rel);
      }
    }
  }
  await walk(dir);
  return out.sort();
}
