// Every event that crosses the wire in a real single-node run (`npm start` as a child process,
// fake LLM) is validated against the published wire-event schema (libs/contracts/src/wire: pi's
// shapes generated from pi's typings, the fleet's own events in TypeBox): session streams and
// project activity, over SSE and over `/v1/ws`. The runs cover a bash tool call, streamed deltas,
// a steer, an abort that also cancels a queued run, and a provider failure (with pi's retries).
// The published schema is the one the gateway serves at `/openapi.json` (the SSE routes' 200
// `text/event-stream` schemas); events are also checked against the contracts' own document.
// The history served by `GET …/sessions/{id}` must validate against its published schema and
// equal the streamed `message_end` messages field for field (the serializer drops nothing).

import { type JsonSchema, WIRE_SCHEMA_DEFS } from "@pi-fleet/contracts";
import {
  type FakeLlm,
  openSse,
  type SseConnection,
  startFakeLlm,
  uniquePrefix,
  waitFor,
} from "@pi-fleet/testkit";
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { endsRun, isEvent, type WireEvent } from "../support/events.ts";
import {
  api,
  createProject,
  createSession,
  eventsUrl,
  type PromptResult,
  prompt,
  registerFakeProvider,
  waitForRunEnd,
} from "../support/http.ts";
import { type Stack, startStack, stopAllStacks } from "../support/stack.ts";

// ---------------------------------------------------------------------------------------------
// Validation, with a precise report for the first invalid event
// ---------------------------------------------------------------------------------------------

/** Deep copy of `value` with every `$ref` passed through `fn`. */
function mapRefs(value: unknown, fn: (ref: string) => string): unknown {
  if (Array.isArray(value)) return value.map((v) => mapRefs(v, fn));
  if (typeof value !== "object" || value === null) return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [
      k,
      k === "$ref" && typeof v === "string" ? fn(v) : mapRefs(v, fn),
    ]),
  );
}

let setCount = 0;

/** Validators over named schemas that reference each other as `#/$defs/<name>`. */
class SchemaSet {
  readonly label: string;
  readonly defs: Readonly<Record<string, JsonSchema>>;
  private readonly ajv: Ajv2020;
  private readonly id = `https://pi-fleet.invalid/schema-set-${++setCount}.json`;
  private readonly cache = new Map<string, ValidateFunction>();

  /** `strict`: ajv's strict mode (off for OpenAPI's dialect, which adds keywords). */
  constructor(label: string, defs: Readonly<Record<string, JsonSchema>>, strict: boolean) {
    this.label = label;
    this.defs = defs;
    this.ajv = new Ajv2020({ allErrors: true, strict });
    this.ajv.addSchema({ $id: this.id, $defs: defs });
  }

  /** The validator of `pointer` (`#/$defs/<name>…`). */
  at(pointer: string): ValidateFunction {
    let v = this.cache.get(pointer);
    if (!v) {
      v = this.ajv.compile({ $ref: `${this.id}${pointer}` });
      this.cache.set(pointer, v);
    }
    return v;
  }

  /** The validator of `schema`, whose `#/$defs/…` references point into this set. */
  compile(schema: JsonSchema): ValidateFunction {
    return this.ajv.compile(
      mapRefs(schema, (ref) => (ref.startsWith("#/$defs/") ? `${this.id}${ref}` : ref)) as JsonSchema,
    );
  }

  /**
   * The object branches of union `name` by the `type` they accept (a type may have several), as
   * pointers: used to explain a failure against the right variant instead of all of them.
   */
  branchesByType(name: string): Map<string, string[]> {
    const out = new Map<string, string[]>();
    const visit = (schema: JsonSchema | undefined, pointer: string): void => {
      if (!schema) return;
      if (typeof schema.$ref === "string") {
        const target = schema.$ref.replace("#/$defs/", "");
        visit(this.defs[target], `#/$defs/${target}`);
        return;
      }
      if (Array.isArray(schema.anyOf)) {
        (schema.anyOf as JsonSchema[]).forEach((branch, i) => {
          visit(branch, `${pointer}/anyOf/${i}`);
        });
        return;
      }
      const type = (schema.properties as Record<string, JsonSchema> | undefined)?.type;
      const values = type === undefined ? [] : type.const === undefined ? type.enum : [type.const];
      for (const value of Array.isArray(values) ? values : []) {
        if (typeof value === "string") out.set(value, [...(out.get(value) ?? []), pointer]);
      }
    };
    visit(this.defs[name], `#/$defs/${name}`);
    return out;
  }
}

const formatErrors = (errors: readonly ErrorObject[] | null | undefined): string =>
  (errors ?? [])
    .slice(0, 5)
    .map((e) => `${e.instancePath || "/"} ${e.message ?? ""} ${JSON.stringify(e.params)}`)
    .join("; ");

/** A received event and where it came from. */
interface Received {
  channel: string;
  offset?: string;
  event: unknown;
}

/**
 * Validates every event against `root` of `set`; returns a report of the first invalid one (its
 * channel, offset, the errors against the variant of its `type`, the event), undefined if all pass.
 */
function firstInvalid(set: SchemaSet, root: string, received: readonly Received[]): string | undefined {
  const validate = set.at(`#/$defs/${root}`);
  for (const [i, r] of received.entries()) {
    if (validate(r.event)) continue;
    const type = (r.event as { type?: unknown } | null)?.type;
    const pointers = (typeof type === "string" && set.branchesByType(root).get(type)) || [];
    const variants = pointers
      .map((p) => {
        const v = set.at(p);
        v(r.event);
        return { p, errors: v.errors ?? [] };
      })
      .sort((a, b) => a.errors.length - b.errors.length);
    const best = variants[0];
    return [
      `${r.channel} event #${i}${r.offset ? ` (offset ${r.offset})` : ""} is not a valid ${root} (${set.label}):`,
      best
        ? `  as ${best.p}: ${formatErrors(best.errors)}`
        : `  no ${root} variant has type ${JSON.stringify(type)}`,
      `  event: ${JSON.stringify(r.event).slice(0, 2000)}`,
    ].join("\n");
  }
  return undefined;
}

/** The wire schemas as the contracts define them (what the gateway publishes). */
const contracts = new SchemaSet("contracts", WIRE_SCHEMA_DEFS, true);

/** What a running gateway publishes at `GET /openapi.json`, made checkable. */
interface Published {
  set: SchemaSet;
  /** Schema names of the SSE routes' `text/event-stream` 200 responses. */
  sessionEvents: string;
  activityEvents: string;
  /** The 200 JSON body schema of `GET <path>`. */
  body(path: string): JsonSchema;
}

type OpenApi = {
  paths: Record<
    string,
    Record<string, { responses: Record<string, { content?: Record<string, { schema?: JsonSchema }> }> }>
  >;
  components?: { schemas?: Record<string, JsonSchema> };
};

function published(doc: OpenApi): Published {
  const toDefs = (ref: string) => ref.replace("#/components/schemas/", "#/$defs/");
  const schemas = mapRefs(doc.components?.schemas ?? {}, toDefs) as Record<string, JsonSchema>;
  const streamSchema = (path: string): string => {
    const ref = doc.paths[path]?.get?.responses["200"]?.content?.["text/event-stream"]?.schema?.$ref;
    if (typeof ref !== "string" || !ref.startsWith("#/components/schemas/")) {
      throw new Error(
        `GET ${path}: /openapi.json documents no 200 text/event-stream schema (components ref)`,
      );
    }
    return ref.slice("#/components/schemas/".length);
  };
  return {
    set: new SchemaSet("published /openapi.json", schemas, false),
    sessionEvents: streamSchema("/v1/projects/{projectId}/sessions/{id}/events"),
    activityEvents: streamSchema("/v1/projects/{projectId}/events"),
    body: (path) => {
      const schema = doc.paths[path]?.get?.responses["200"]?.content?.["application/json"]?.schema;
      if (!schema) throw new Error(`/openapi.json documents no 200 JSON body for GET ${path}`);
      return mapRefs(schema, toDefs) as JsonSchema;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The stack, the streams and the runs
// ---------------------------------------------------------------------------------------------

type Frame = { kind: string; [key: string]: unknown };

/** A `/v1/ws` client that records every frame. */
async function connectWs(base: string): Promise<{ ws: WebSocket; frames: Frame[] }> {
  const ws = new WebSocket(`${base.replace("http", "ws")}/v1/ws`);
  const frames: Frame[] = [];
  ws.addEventListener("message", (m) => frames.push(JSON.parse(String(m.data)) as Frame));
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve());
    ws.addEventListener("error", () => reject(new Error("websocket failed")));
  });
  return { ws, frames };
}

const eventOf = (f: Frame): WireEvent => f.event as WireEvent;

let llm: FakeLlm;
let stack: Stack;
const sockets: SseConnection[] = [];
const websockets: WebSocket[] = [];

beforeAll(async () => {
  llm = await startFakeLlm();
  stack = await startStack({ redisUrl: inject("redisUrl"), prefix: uniquePrefix("e2e wire events") });
  await registerFakeProvider(stack.url, llm);
});

afterAll(async () => {
  for (const s of sockets) s.close();
  for (const ws of websockets) ws.close();
  await stopAllStacks();
  await llm?.close();
});

describe("wire events against the published schema", () => {
  it("every event over SSE and /v1/ws, and the served history, validate", async () => {
    const base = stack.url;
    const http = api(base);
    const projectId = await createProject(base, "Wire Events");
    const sessionId = await createSession(base, projectId);

    // Streams: the session over SSE from the start, project activity over SSE, a cursor ahead of
    // the stream (answered with stream_reset), and both again over one WebSocket.
    const sessionSse = await openSse(eventsUrl(base, projectId, sessionId, "0"));
    const activitySse = await openSse(`${base}/v1/projects/${projectId}/events?after=0`);
    const resetSse = await openSse(eventsUrl(base, projectId, sessionId, "99999999999999-0"));
    sockets.push(sessionSse, activitySse, resetSse);
    for (const s of [sessionSse, activitySse, resetSse]) expect(s.status, s.errorBody).toBe(200);

    const { ws, frames } = await connectWs(base);
    websockets.push(ws);
    ws.send(JSON.stringify({ kind: "hello", protocol: 1 }));
    ws.send(JSON.stringify({ kind: "subscribe", id: "s", projectId, sessionId, after: "0" }));
    ws.send(JSON.stringify({ kind: "subscribe", id: "a", projectId, after: "0" }));
    await waitFor(() => frames.filter((f) => f.kind === "subscribed").length === 2);

    const path = `/v1/projects/${projectId}/sessions/${sessionId}`;
    /** Resolves once run `runId` streams its first message_update. */
    const streaming = (runId: string) =>
      sessionSse.waitFor((e, all) => {
        const started = all.findIndex(isEvent("run_started", runId));
        return started >= 0 && all.indexOf(e) > started && isEvent("message_update")(e);
      }, 30_000);

    // 1. a bash tool call; 2. streamed deltas.
    const bash = await prompt(base, projectId, sessionId, "[[bash:echo hi]]");
    expect((await waitForRunEnd(base, projectId, sessionId, bash.runId)).status).toBe("finished");
    const deltas = await prompt(base, projectId, sessionId, "[[deltas:20]]");
    expect((await waitForRunEnd(base, projectId, sessionId, deltas.runId)).status).toBe("finished");

    // 3. a steer into a running run.
    const steered = await prompt(base, projectId, sessionId, "[[deltas:60]] [[delay:40]]");
    await streaming(steered.runId);
    const steer = await http.post(`${path}/steer`, { text: "[[reply:steered]]" });
    expect(steer.status, steer.text).toBe(200);
    expect(steer.json).toMatchObject({ delivered: "steer", runId: steered.runId });
    expect((await waitForRunEnd(base, projectId, sessionId, steered.runId)).status).toBe("finished");

    // 4. an abort that also cancels a queued run.
    const long = await prompt(base, projectId, sessionId, "[[deltas:400]] [[delay:25]]");
    const queued = await prompt(base, projectId, sessionId, "[[reply:never runs]]");
    expect(queued.position).toBe(1);
    await streaming(long.runId);
    const abort = await http.post(`${path}/abort`, { cancelQueued: true });
    expect(abort.status, abort.text).toBe(200);
    expect(abort.json).toMatchObject({ aborted: true, cancelled: 1 });
    expect((await waitForRunEnd(base, projectId, sessionId, long.runId)).status).toBe("aborted");
    expect((await waitForRunEnd(base, projectId, sessionId, queued.runId)).status).toBe("cancelled");

    // 5. a provider failure (pi retries it, then gives up).
    const failing: PromptResult = await prompt(base, projectId, sessionId, "[[fail:500]]");
    expect((await waitForRunEnd(base, projectId, sessionId, failing.runId, 90_000)).status).toBe("failed");

    // Every stream has seen the last run end.
    const last = failing.runId;
    await sessionSse.waitFor(endsRun(last), 30_000);
    await activitySse.waitFor(endsRun(last), 30_000);
    const wsEnded = (activity: boolean) =>
      frames.some(
        (f) =>
          f.kind === "event" &&
          (f.sessionId === undefined) === activity &&
          eventOf(f).type === "run_failed" &&
          eventOf(f).runId === last,
      );
    await waitFor(() => wsEnded(false) && wsEnded(true), {
      timeoutMs: 30_000,
      message: "WS saw the last run end",
    });
    ws.close();

    // Collect: every SSE data line must be JSON.
    const fromSse = (channel: string, s: SseConnection): Received[] =>
      s.events.map((e) => {
        expect(e.json, `${channel}: non-JSON data ${e.data.slice(0, 200)}`).toBeDefined();
        return { channel, ...(e.id === undefined ? {} : { offset: e.id }), event: e.json };
      });
    const sessionEvents = [
      ...fromSse("SSE session", sessionSse),
      ...fromSse("SSE session (reset)", resetSse),
    ];
    const activityEvents = fromSse("SSE activity", activitySse);
    for (const f of frames.filter((f) => f.kind === "event")) {
      const r: Received = {
        channel: f.sessionId === undefined ? "WS activity" : "WS session",
        ...(typeof f.offset === "string" ? { offset: f.offset } : {}),
        event: f.event,
      };
      (f.sessionId === undefined ? activityEvents : sessionEvents).push(r);
    }
    const wsErrors = frames.filter((f) => f.kind === "error");
    expect(wsErrors, JSON.stringify(wsErrors)).toEqual([]);

    // THE check: every event validates against the published schema (as served by the gateway
    // at /openapi.json, and as the contracts define it).
    const served = published((await http.get<OpenApi>("/openapi.json")).json);
    expect(firstInvalid(served.set, served.sessionEvents, sessionEvents)).toBeUndefined();
    expect(firstInvalid(served.set, served.activityEvents, activityEvents)).toBeUndefined();
    expect(firstInvalid(contracts, "WireEvent", sessionEvents)).toBeUndefined();
    expect(firstInvalid(contracts, "ActivityEvent", activityEvents)).toBeUndefined();

    // The runs exercised what they should (the check above is not vacuous).
    const seen = new Set(sessionEvents.map((r) => (r.event as WireEvent).type));
    for (const type of [
      "run_queued",
      "run_started",
      "run_finished",
      "run_aborted",
      "run_cancelled",
      "run_failed",
      "stream_reset",
      "agent_start",
      "turn_start",
      "message_start",
      "message_update",
      "message_end",
      "tool_execution_start",
      "tool_execution_end",
      "turn_end",
      "agent_end",
      "queue_update",
    ]) {
      expect(seen, `no ${type} among ${[...seen].join(", ")}`).toContain(type);
    }
    const seenActivity = new Set(activityEvents.map((r) => (r.event as WireEvent).type));
    for (const type of ["session_created", "run_queued", "run_started", "run_finished", "run_cancelled"]) {
      expect(seenActivity, `no ${type} among ${[...seenActivity].join(", ")}`).toContain(type);
    }
    // SSE and WebSocket carried the same session events.
    const sseSession = sessionSse.events.map((e) => e.json);
    const wsSession = frames.filter((f) => f.kind === "event" && f.sessionId === sessionId).map(eventOf);
    expect(wsSession).toEqual(sseSession);

    // The served history: valid AgentMessages, identical to what message_end carried.
    const history = await http.get<{ id: string; messages: unknown[] }>(path);
    expect(history.status, history.text).toBe(200);
    const validateHistory = served.set.compile(served.body("/v1/projects/{projectId}/sessions/{id}"));
    expect(validateHistory(history.json), formatErrors(validateHistory.errors)).toBe(true);
    const streamed = sseSession
      .filter((e) => (e as WireEvent).type === "message_end")
      .map((e) => (e as { message: { role: string } }).message)
      .filter((m) => m.role !== "system");
    expect(history.json.messages).toEqual(streamed);
    const toolCall = history.json.messages
      .flatMap((m) => {
        const content = (m as { content?: unknown }).content;
        return Array.isArray(content) ? (content as { type?: string }[]) : [];
      })
      .find((c) => c.type === "toolCall");
    expect(toolCall).toMatchObject({ name: "bash", arguments: { command: "echo hi" } });

    // Pending extension UI requests (none here) validate against their published schema too.
    const pending = await http.get(`${path}/extension-ui`);
    expect(pending.status, pending.text).toBe(200);
    const validatePending = served.set.compile(
      served.body("/v1/projects/{projectId}/sessions/{id}/extension-ui"),
    );
    expect(validatePending(pending.json), formatErrors(validatePending.errors)).toBe(true);
  });

  it("reports an invalid event precisely", () => {
    const report = firstInvalid(contracts, "WireEvent", [
      { channel: "test", event: { type: "run_finished", runId: "r", sessionId: "s", usage: { input: 1 } } },
    ]);
    expect(report).toContain("#/$defs/RunFinishedEvent");
    expect(report).toContain("/usage must have required property 'output'");
    expect(
      firstInvalid(contracts, "WireEvent", [{ channel: "test", event: { type: "no_such_event" } }]),
    ).toContain('no WireEvent variant has type "no_such_event"');
  });
});
