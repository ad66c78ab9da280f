// What a user sends into a session, end to end (real Redis, in-process gateway + worker, scripted
// fake LLM): images on prompt and steer reach the LLM request as image content; image limits and
// bad images answer 413 / 400 with nothing queued; `streamingBehavior` on a prompt joins the
// running run (steer / followUp) or queues when idle; a project prompt template expands.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { connectRedis, type Redis } from "@pi-fleet/redis";
import type { ChatContentPart, ChatMessage, RecordedRequest } from "@pi-fleet/testkit";
import { openSse, waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type InProcessStack, startInProcessStack } from "./helpers/in-process-stack.ts";

/** A valid 1×1 PNG. */
const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
const MAX_IMAGE_BYTES = 2048;
const MAX_IMAGES = 2;
const PROJECT = "inputs";

let stack: InProcessStack;
let redis: Redis;
const path = (session: string) => `/v1/projects/${PROJECT}/sessions/${session}`;

interface ErrorBody {
  code: string;
  error: string;
}
interface State {
  status: string;
  queueLength: number;
  lastOffset: string;
}

beforeAll(async () => {
  stack = await startInProcessStack(inject("redisUrl"), "prompt-input", {
    env: {
      PI_FLEET_MAX_IMAGE_BYTES: String(MAX_IMAGE_BYTES),
      PI_FLEET_MAX_IMAGES: String(MAX_IMAGES),
    },
  });
  // The fake model takes images (the helper registers it text-only: pi would send a placeholder).
  const put = await stack.call("PUT", "/v1/custom/providers", {
    provider: "fake",
    baseUrl: stack.fake.baseUrl,
    api: "openai-completions",
    apiKey: "sk-fake",
    models: [{ id: "fake-model", input: ["text", "image"] }],
  });
  expect(put.status).toBe(200);
  expect((await stack.call("POST", "/v1/projects", { name: PROJECT })).status).toBe(200);
  redis = await connectRedis(inject("redisUrl"), "command", "test-prompt-input");
});

afterAll(async () => {
  await redis?.quit();
  await stack?.close();
});

async function newSession(): Promise<string> {
  const res = await stack.call("POST", `/v1/projects/${PROJECT}/sessions`, {});
  return (res.json as { id: string }).id;
}

async function runStatus(session: string, runId: string): Promise<string> {
  return ((await stack.call("GET", `${path(session)}/runs/${runId}`)).json as { status: string }).status;
}

async function waitFinished(session: string, runId: string): Promise<void> {
  await waitFor(async () => (await runStatus(session, runId)) === "finished", { timeoutMs: 15_000 });
}

async function state(session: string): Promise<State> {
  return (await stack.call("GET", `${path(session)}/state`)).json as State;
}

async function lastAssistantText(session: string): Promise<unknown> {
  const res = await stack.call("POST", `${path(session)}/commands`, { type: "get_last_assistant_text" });
  return (res.json as { data?: { text?: unknown } }).data?.text;
}

/** The LLM requests whose last user message contains `marker`. */
function requestsWith(marker: string): RecordedRequest[] {
  return stack.fake.requests.filter((r) => {
    const users = (r.body.messages ?? []).filter((m) => m.role === "user");
    return JSON.stringify(users.at(-1)?.content ?? "").includes(marker);
  });
}

/** The user message of the LLM request that contains `marker`. */
function userMessageWith(marker: string): ChatMessage | undefined {
  for (const r of stack.fake.requests) {
    const found = (r.body.messages ?? []).find(
      (m) => m.role === "user" && JSON.stringify(m.content ?? "").includes(marker),
    );
    if (found) return found;
  }
  return undefined;
}

function imageParts(message: ChatMessage | undefined): ChatContentPart[] {
  return Array.isArray(message?.content) ? message.content.filter((p) => p.type === "image_url") : [];
}

function imageUrl(part: ChatContentPart | undefined): string {
  return (part?.image_url as { url?: string } | undefined)?.url ?? "";
}

/** Starts a long run and resolves once the LLM streams (so steer / follow-up have a run to join). */
async function startLongRun(session: string, tag: string) {
  const res = await stack.call("POST", `${path(session)}/prompt`, {
    text: `[[delay:20]] [[deltas:60]] [[tag:${tag}]]`,
  });
  expect(res.status).toBe(200);
  const { runId, offset } = res.json as { runId: string; offset: string };
  const sse = await openSse(`${stack.gateway.url}${path(session)}/events?after=${offset}`);
  await sse.waitFor((e) => (e.json as { type?: string })?.type === "message_update", 10_000);
  return { runId, offset, sse };
}

/** Asserts the session queued nothing: idle, empty queue, stream tail unchanged. */
async function expectNothingQueued(session: string, before: State): Promise<void> {
  const after = await state(session);
  expect(after.status).toBe("idle");
  expect(after.queueLength).toBe(0);
  expect(after.lastOffset).toBe(before.lastOffset);
}

describe("images", () => {
  it("an image on a prompt reaches the LLM as image content", async () => {
    const session = await newSession();
    const res = await stack.call("POST", `${path(session)}/prompt`, {
      text: "[[reply:saw it]] [[tag:prompt-image]]",
      // pi's own ImageContent shape (with `type`) is accepted too.
      images: [
        { data: PNG, mimeType: "image/png" },
        { type: "image", data: PNG, mimeType: "image/png" },
      ],
    });
    expect(res.status).toBe(200);
    const body = res.json as { ok: boolean; runId: string; offset: string; position: number };
    expect(body).toMatchObject({ ok: true, position: 0 });
    expect(Object.keys(body).sort()).toEqual(["offset", "ok", "position", "runId"]);
    await waitFinished(session, body.runId);
    const parts = imageParts(userMessageWith("[[tag:prompt-image]]"));
    expect(parts).toHaveLength(2);
    for (const part of parts) expect(imageUrl(part)).toMatch(/^data:image\/png;base64,[A-Za-z0-9+/]+=*$/);
    expect(await lastAssistantText(session)).toBe("saw it");
    // The transcript keeps the image as pi image content.
    const history = (await stack.call("GET", path(session))).json as {
      messages: { role: string; content: unknown }[];
    };
    const user = history.messages.find((m) => m.role === "user");
    expect(user?.content).toEqual(
      expect.arrayContaining([expect.objectContaining({ type: "image", mimeType: "image/png" })]),
    );
  });

  it("an image on a steer joins the running run and reaches the LLM", async () => {
    const session = await newSession();
    const { runId, sse } = await startLongRun(session, "long-steer-image");
    const steer = await stack.call("POST", `${path(session)}/steer`, {
      text: "[[reply:steered]] [[tag:steer-image]]",
      images: [{ data: PNG, mimeType: "image/png" }],
    });
    expect(steer.status).toBe(200);
    expect(steer.json).toMatchObject({ ok: true, delivered: "steer", runId });
    await waitFinished(session, runId);
    sse.close();
    const parts = imageParts(userMessageWith("[[tag:steer-image]]"));
    expect(parts).toHaveLength(1);
    expect(imageUrl(parts[0])).toBe(`data:image/png;base64,${PNG}`);
    expect(await lastAssistantText(session)).toBe("steered");
    // The stored images were taken by the worker: nothing left under the control-input keys.
    expect(await redis.keys(`${stack.prefix}:ctl-input:*`)).toEqual([]);
  });

  it("an image on a follow-up for an idle session rides along with the prompt it becomes", async () => {
    const session = await newSession();
    const res = await stack.call("POST", `${path(session)}/follow_up`, {
      text: "[[reply:idle image]] [[tag:idle-follow-image]]",
      images: [{ data: PNG, mimeType: "image/png" }],
    });
    expect(res.json).toMatchObject({ ok: true, delivered: "prompt", position: 0 });
    await waitFinished(session, (res.json as { runId: string }).runId);
    expect(imageParts(userMessageWith("[[tag:idle-follow-image]]"))).toHaveLength(1);
  });

  it("answers 413 for an image over PI_FLEET_MAX_IMAGE_BYTES and queues nothing", async () => {
    const session = await newSession();
    const before = await state(session);
    const big = Buffer.alloc(MAX_IMAGE_BYTES + 1, 7).toString("base64");
    const justFits = Buffer.alloc(MAX_IMAGE_BYTES, 7).toString("base64");
    for (const route of ["prompt", "steer", "follow_up"]) {
      const res = await stack.call("POST", `${path(session)}/${route}`, {
        text: "[[reply:never]]",
        images: [
          { data: justFits, mimeType: "image/png" },
          { data: big, mimeType: "image/png" },
        ],
      });
      expect(res.status, route).toBe(413);
      expect((res.json as ErrorBody).code).toBe("PF_ERR_REQUEST_TOO_LARGE");
      expect((res.json as ErrorBody).error).toContain("images[1]");
    }
    await expectNothingQueued(session, before);
    expect(requestsWith("[[reply:never]]")).toEqual([]);
  });

  it("answers 413 for more than PI_FLEET_MAX_IMAGES images and queues nothing", async () => {
    const session = await newSession();
    const before = await state(session);
    const images = Array.from({ length: MAX_IMAGES + 1 }, () => ({ data: PNG, mimeType: "image/png" }));
    for (const route of ["prompt", "steer", "follow_up"]) {
      const res = await stack.call("POST", `${path(session)}/${route}`, { text: "too many", images });
      expect(res.status, route).toBe(413);
      expect((res.json as ErrorBody).code).toBe("PF_ERR_REQUEST_TOO_LARGE");
    }
    await expectNothingQueued(session, before);
  });

  it("answers 400 for a bad mime type or bad base64 and queues nothing", async () => {
    const session = await newSession();
    const before = await state(session);
    const bad: { what: string; image: Record<string, unknown> }[] = [
      { what: "mime type", image: { data: PNG, mimeType: "image/bmp" } },
      { what: "no mime type", image: { data: PNG } },
      { what: "not base64", image: { data: "not base64!!", mimeType: "image/png" } },
      { what: "unpadded", image: { data: "QQ", mimeType: "image/png" } },
      {
        what: "line breaks",
        image: { data: `${PNG.slice(0, 40)}\n${PNG.slice(40)}`, mimeType: "image/png" },
      },
      { what: "base64url", image: { data: "-_-_", mimeType: "image/png" } },
      { what: "stray pad bits", image: { data: "QR==", mimeType: "image/png" } },
      { what: "padding inside", image: { data: "QQ==QQ==", mimeType: "image/png" } },
      { what: "empty", image: { data: "", mimeType: "image/png" } },
      { what: "wrong type", image: { type: "text", data: PNG, mimeType: "image/png" } },
    ];
    for (const { what, image } of bad) {
      for (const route of ["prompt", "steer"]) {
        const res = await stack.call("POST", `${path(session)}/${route}`, { text: "x", images: [image] });
        expect(res.status, `${what} on ${route}`).toBe(400);
        expect((res.json as ErrorBody).code).toBe("PF_ERR_REQUEST_INVALID");
      }
    }
    await expectNothingQueued(session, before);
  });
});

describe("streamingBehavior", () => {
  it("steer on a busy session joins the running run: one run, the LLM sees the message", async () => {
    const session = await newSession();
    const { runId, offset, sse } = await startLongRun(session, "long-sb-steer");
    const res = await stack.call("POST", `${path(session)}/prompt`, {
      text: "[[reply:joined]] [[tag:sb-steer]]",
      streamingBehavior: "steer",
      images: [{ data: PNG, mimeType: "image/png" }],
    });
    expect(res.status).toBe(200);
    const body = res.json as { runId: string; offset: string; position: number; delivered: string };
    expect(body).toMatchObject({ ok: true, runId, position: 0, delivered: "steer" });
    expect(body.offset >= offset).toBe(true);
    expect((await state(session)).queueLength).toBe(0);
    await waitFinished(session, runId);
    await sse.waitFor((e) => (e.json as { type?: string })?.type === "run_finished", 10_000);
    const types = sse.events.map((e) => (e.json as { type: string }).type);
    sse.close();
    expect(types.filter((t) => t === "run_queued")).toHaveLength(1);
    expect(types.filter((t) => t === "run_started")).toHaveLength(1);
    expect(types).toContain("queue_update");
    expect(requestsWith("[[tag:sb-steer]]")).toHaveLength(1);
    expect(imageParts(userMessageWith("[[tag:sb-steer]]"))).toHaveLength(1);
    expect(await lastAssistantText(session)).toBe("joined");
    expect(await state(session)).toMatchObject({ status: "idle", queueLength: 0 });
  });

  it("followUp on a busy session joins the running run after its turn", async () => {
    const session = await newSession();
    const { runId, sse } = await startLongRun(session, "long-sb-follow");
    const res = await stack.call("POST", `${path(session)}/prompt`, {
      text: "[[reply:followed]] [[tag:sb-follow]]",
      streamingBehavior: "followUp",
    });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ ok: true, runId, position: 0, delivered: "followUp" });
    await waitFinished(session, runId);
    await sse.waitFor((e) => (e.json as { type?: string })?.type === "run_finished", 10_000);
    const types = sse.events.map((e) => (e.json as { type: string }).type);
    sse.close();
    expect(types.filter((t) => t === "run_started")).toHaveLength(1);
    // The follow-up came after the long turn had finished streaming.
    const [followUp] = requestsWith("[[tag:sb-follow]]");
    const long = requestsWith("[[tag:long-sb-follow]]");
    expect(followUp).toBeDefined();
    expect(long).toHaveLength(1);
    expect(followUp!.receivedAt).toBeGreaterThanOrEqual(long[0]!.receivedAt);
    expect(await lastAssistantText(session)).toBe("followed");
  });

  it("on an idle session it is a normal queued prompt", async () => {
    const session = await newSession();
    for (const streamingBehavior of ["steer", "followUp"]) {
      const res = await stack.call("POST", `${path(session)}/prompt`, {
        text: `[[reply:idle ${streamingBehavior}]]`,
        streamingBehavior,
      });
      expect(res.status).toBe(200);
      const body = res.json as { runId: string; offset: string; position: number; delivered: string };
      expect(body).toMatchObject({ ok: true, position: 0, delivered: "prompt" });
      expect(typeof body.offset).toBe("string");
      await waitFinished(session, body.runId);
      expect(await lastAssistantText(session)).toBe(`idle ${streamingBehavior}`);
    }
  });

  it("without it a prompt for a busy session is queued behind the running run", async () => {
    const session = await newSession();
    const { runId, sse } = await startLongRun(session, "long-queued");
    const res = await stack.call("POST", `${path(session)}/prompt`, { text: "[[reply:next]]" });
    const body = res.json as { runId: string; position: number; delivered?: string };
    expect(body.runId).not.toBe(runId);
    expect(body.position).toBe(1);
    expect(body.delivered).toBeUndefined();
    await waitFinished(session, body.runId);
    sse.close();
  });
});

describe("validation", () => {
  it("still rejects unknown fields and bad values with 400", async () => {
    const session = await newSession();
    const before = await state(session);
    const cases: { route: string; body: unknown }[] = [
      { route: "prompt", body: { text: "x", extra: 1 } },
      { route: "prompt", body: { text: "x", streamingBehavior: "now" } },
      { route: "prompt", body: { text: "x", images: [{ data: PNG, mimeType: "image/png", name: "a.png" }] } },
      { route: "prompt", body: { text: "x", images: { data: PNG, mimeType: "image/png" } } },
      { route: "steer", body: { text: "x", streamingBehavior: "steer" } },
      {
        route: "follow_up",
        body: { text: "x", images: [{ data: PNG, mimeType: "image/png" }], extra: true },
      },
    ];
    for (const { route, body } of cases) {
      const res = await stack.call("POST", `${path(session)}/${route}`, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect((res.json as ErrorBody).code).toBe("PF_ERR_REQUEST_INVALID");
    }
    await expectNothingQueued(session, before);
  });
});

describe("prompt templates", () => {
  it("expands a project prompt template (/name args), as pi's RPC mode does", async () => {
    const project = "templates";
    expect((await stack.call("POST", "/v1/projects", { name: project })).status).toBe(200);
    // Written before the session opens on the worker (resources load when it opens).
    const prompts = join(stack.workspace, "default", "projects", project, ".pi", "prompts");
    await mkdir(prompts, { recursive: true });
    await writeFile(
      join(prompts, "greet.md"),
      "Say hello to $1 [[reply:hello $1 and $2]] [[tag:from-template]]\n",
    );
    const session = (
      (await stack.call("POST", `/v1/projects/${project}/sessions`, {})).json as { id: string }
    ).id;
    const res = await stack.call("POST", `/v1/projects/${project}/sessions/${session}/prompt`, {
      text: '/greet world "big moon"',
    });
    expect(res.status).toBe(200);
    const { runId } = res.json as { runId: string };
    await waitFor(
      async () =>
        (
          (await stack.call("GET", `/v1/projects/${project}/sessions/${session}/runs/${runId}`)).json as {
            status: string;
          }
        ).status === "finished",
      { timeoutMs: 15_000 },
    );
    const user = userMessageWith("[[tag:from-template]]");
    expect(JSON.stringify(user?.content)).toContain("Say hello to world [[reply:hello world and big moon]]");
    const last = await stack.call("POST", `/v1/projects/${project}/sessions/${session}/commands`, {
      type: "get_last_assistant_text",
    });
    expect((last.json as { data: { text: string } }).data.text).toBe("hello world and big moon");
    // A `/name` that is no template reaches the model verbatim.
    const plain = await stack.call("POST", `/v1/projects/${project}/sessions/${session}/prompt`, {
      text: "/nosuch [[reply:verbatim]] [[tag:no-template]]",
    });
    const plainRun = (plain.json as { runId: string }).runId;
    await waitFor(
      async () =>
        (
          (await stack.call("GET", `/v1/projects/${project}/sessions/${session}/runs/${plainRun}`)).json as {
            status: string;
          }
        ).status === "finished",
      { timeoutMs: 15_000 },
    );
    expect(JSON.stringify(userMessageWith("[[tag:no-template]]")?.content)).toContain(
      "/nosuch [[reply:verbatim]]",
    );
  });
});
