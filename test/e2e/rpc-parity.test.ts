// Parity of pi-fleet's RPC socket (`GET …/sessions/{id}/rpc`) with pi's own RPC mode: pi's CLI
// (`pi --mode rpc`, the package's bin, run as a child process over stdio with a temp agent dir,
// cwd and session dir) and a single-node pi-fleet process (`npm start`) get the same script of
// RPC records, both against the same scripted fake LLM (a custom provider: pi's models.json /
// the fleet's custom provider). Compared: every response (id, command, success, pi's exact error
// texts, and the data's shape — the same keys and value types, recursively), the event types of
// each prompt in order (pi's events only, no fleet events), and the shape of each event type.
// Where the fleet differs on purpose the difference is in ALLOWED below, with the reason; any
// other difference fails the test. RPC_PARITY_DUMP=<dir> writes both transcripts there.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type FakeLlm, startFakeLlm, uniquePrefix, waitFor } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import WebSocket from "ws";
import { createProject, createSession, registerFakeProvider } from "../support/http.ts";
import { repoRoot, type Stack, startStack, stopAllStacks } from "../support/stack.ts";

type Rec = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------
// Two transports of the same protocol
// ---------------------------------------------------------------------------------------------

/** An RPC peer: raw records out, parsed records in (in arrival order). */
interface Peer {
  readonly name: string;
  readonly records: Rec[];
  sendRaw(line: string): void;
  close(): Promise<void>;
}

/** pi's CLI in RPC mode: LF-framed JSON on stdin / stdout (split on `\n` only, as pi's docs say). */
async function startPi(llm: FakeLlm, root: string): Promise<Peer & { stderr(): string }> {
  const pkgDir = join(repoRoot, "node_modules/@earendil-works/pi-coding-agent");
  const pkg = JSON.parse(await readFile(join(pkgDir, "package.json"), "utf8")) as { bin: { pi: string } };
  const agentDir = join(root, "agent");
  const cwd = join(root, "cwd");
  const sessions = join(root, "sessions");
  for (const dir of [agentDir, cwd, sessions, join(root, "home")]) await mkdir(dir, { recursive: true });
  // The fake LLM as a custom provider (pi's docs/models.md), the same model the fleet registers.
  await writeFile(
    join(agentDir, "models.json"),
    JSON.stringify({
      providers: {
        fake: {
          baseUrl: llm.baseUrl,
          api: "openai-completions",
          apiKey: "sk-fake",
          models: [{ id: "fake-model", name: "Fake" }],
        },
      },
    }),
  );
  const child: ChildProcess = spawn(
    process.execPath,
    [
      join(pkgDir, pkg.bin.pi),
      "--mode",
      "rpc",
      "--provider",
      "fake",
      "--model",
      "fake-model",
      "--session-dir",
      sessions,
    ],
    {
      cwd,
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: join(root, "home"),
        PI_CODING_AGENT_DIR: agentDir,
        PI_OFFLINE: "1",
        PI_TELEMETRY: "0",
      },
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  const records: Rec[] = [];
  let buffer = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", (chunk: string) => {
    buffer += chunk;
    for (let nl = buffer.indexOf("\n"); nl !== -1; nl = buffer.indexOf("\n")) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line.trim() !== "") records.push(JSON.parse(line) as Rec);
    }
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    name: "pi",
    records,
    stderr: () => stderr,
    sendRaw: (line) => child.stdin?.write(`${line}\n`),
    async close() {
      child.stdin?.end(); // pi shuts down at the end of its input
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** pi-fleet's RPC socket: one JSON record per text frame. */
async function connectFleet(url: string): Promise<Peer> {
  const ws = new WebSocket(url);
  const records: Rec[] = [];
  ws.on("message", (data) => records.push(JSON.parse(String(data)) as Rec));
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  return {
    name: "fleet",
    records,
    sendRaw: (line) => ws.send(line),
    async close() {
      const closed = new Promise((resolve) => ws.once("close", resolve));
      ws.close();
      await closed;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The script
// ---------------------------------------------------------------------------------------------

/** What one peer did in one step: the responses it got and the events in between. */
interface Step {
  name: string;
  responses: Rec[];
  /** Non-response records from the step's first record until its end, in order. */
  events: Rec[];
}

const isResponse = (r: Rec) => r.type === "response";

/** Drives one peer through the script and records every step. */
async function runScript(peer: Peer): Promise<Step[]> {
  const steps: Step[] = [];
  const step = async (name: string, body: (from: number) => Promise<void>) => {
    const from = peer.records.length;
    await body(from);
    const records = peer.records.slice(from);
    steps.push({
      name,
      responses: records.filter(isResponse),
      events: records.filter((r) => !isResponse(r)),
    });
  };
  const send = (record: Rec | string) =>
    peer.sendRaw(typeof record === "string" ? record : JSON.stringify(record));
  const until = (from: number, what: string, pred: (r: Rec) => boolean, timeoutMs = 15_000) =>
    waitFor(() => peer.records.slice(from).find(pred), { timeoutMs }).catch((err: Error) => {
      const tail = peer.records.slice(from).map((r) => (isResponse(r) ? `response ${String(r.id)}` : r.type));
      throw new Error(`${peer.name}: ${what}: ${err.message}; records since: ${JSON.stringify(tail)}`);
    });
  const response = (from: number, id: unknown) =>
    until(from, `response ${String(id)}`, (r) => isResponse(r) && r.id === id);
  const request = async (from: number, record: Rec) => {
    send(record);
    return response(from, record.id);
  };
  const settled = (from: number) => until(from, "agent_settled", (r) => r.type === "agent_settled");

  await step("get_state", async (from) => {
    await request(from, { id: "state-1", type: "get_state" });
  });
  await step("prompt", async (from) => {
    await request(from, { id: "prompt-1", type: "prompt", message: "[[reply:hello from the parity test]]" });
    await settled(from);
  });
  await step("get_messages", async (from) => {
    await request(from, { id: "messages-1", type: "get_messages" });
  });
  await step("get_last_assistant_text", async (from) => {
    await request(from, { id: "text-1", type: "get_last_assistant_text" });
  });
  await step("set_session_name", async (from) => {
    await request(from, { id: "name-1", type: "set_session_name", name: "  parity run  " });
    await request(from, { id: "name-2", type: "set_session_name", name: "   " });
    // The event travels the session stream, the responses the control channel: wait for it here.
    await until(from, "session_info_changed", (r) => r.type === "session_info_changed");
  });
  await step("get_session_stats", async (from) => {
    await request(from, { id: "stats-1", type: "get_session_stats" });
  });
  await step("get_state (named)", async (from) => {
    await request(from, { id: "state-2", type: "get_state" });
  });
  await step("streaming: prompt, prompt again, steer, abort", async (from) => {
    await request(from, {
      id: "prompt-2",
      type: "prompt",
      message: "[[reply:a slow answer streamed in several pieces]] [[delay:300]]",
    });
    await until(
      from,
      "first text delta",
      (r) => r.type === "message_update" && (r.assistantMessageEvent as Rec)?.type === "text_delta",
    );
    await request(from, { id: "prompt-3", type: "prompt", message: "while it streams" });
    await request(from, { id: "steer-1", type: "steer", message: "[[reply:steered]]" });
    await request(from, { id: "abort-1", type: "abort" });
    await settled(from);
  });
  await step("get_state (after abort)", async (from) => {
    await request(from, { id: "state-3", type: "get_state" });
  });
  await step("unknown command", async (from) => {
    await request(from, { id: "unknown-1", type: "frobnicate" });
  });
  await step("malformed JSON", async (from) => {
    send("{not json");
    await until(from, "parse error", (r) => isResponse(r) && r.command === "parse");
  });
  await step("ids: numeric, absent", async (from) => {
    await request(from, { id: 42, type: "get_last_assistant_text" });
    send({ type: "get_last_assistant_text" });
    await until(from, "response without id", (r) => isResponse(r) && !("id" in r));
  });
  await step("prompt after abort", async (from) => {
    await request(from, { id: "prompt-4", type: "prompt", message: "[[reply:back again]]" });
    await settled(from);
  });
  await step("more reads", async (from) => {
    await request(from, { id: "commands-1", type: "get_commands" });
    await request(from, { id: "levels-1", type: "get_available_thinking_levels" });
    await request(from, { id: "fork-messages-1", type: "get_fork_messages" });
  });
  await step("new_session", async (from) => {
    await request(from, { id: "new-1", type: "new_session" });
    // The connection now drives the new session, as pi's RPC process does.
    await request(from, { id: "messages-2", type: "get_messages" });
    await request(from, { id: "state-4", type: "get_state" });
  });
  return steps;
}

// ---------------------------------------------------------------------------------------------
// Shapes and the allow-list
// ---------------------------------------------------------------------------------------------

/** A JSON value's type tree: primitives by type name, arrays element-wise, objects by key. */
type Shape = string | Shape[] | { [key: string]: Shape };

function shape(value: unknown): Shape {
  if (value === null) return "null";
  if (Array.isArray(value)) return value.map(shape);
  if (typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value as Rec)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => [k, shape(v)]),
    );
  }
  return typeof value;
}

/** Differences between two shapes, as `path: pi … / fleet …` lines. */
function shapeDiff(pi: Shape, fleet: Shape, path: string, out: string[]): string[] {
  const kind = (s: Shape) => (typeof s === "string" ? s : Array.isArray(s) ? "array" : "object");
  if (kind(pi) !== kind(fleet)) {
    out.push(`${path}: pi ${kind(pi)} / fleet ${kind(fleet)}`);
  } else if (Array.isArray(pi) && Array.isArray(fleet)) {
    if (pi.length !== fleet.length) out.push(`${path}: pi ${pi.length} items / fleet ${fleet.length} items`);
    else for (const [i, p] of pi.entries()) shapeDiff(p, fleet[i] as Shape, `${path}[${i}]`, out);
  } else if (typeof pi === "object" && typeof fleet === "object") {
    const a = pi as Record<string, Shape>;
    const b = fleet as Record<string, Shape>;
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (!(key in b)) out.push(`${path}.${key}: only pi`);
      else if (!(key in a)) out.push(`${path}.${key}: only fleet`);
      else shapeDiff(a[key] as Shape, b[key] as Shape, `${path}.${key}`, out);
    }
  }
  return out;
}

/** A deliberate difference: difference lines matching `where` are accepted, for `why`. */
interface Allowed {
  where: RegExp;
  why: string;
}

/** Shape differences of responses and events the fleet has on purpose. */
const ALLOWED: Allowed[] = [
  {
    where: /^response state-\d\.data\.model\.(baseUrl|cost): only pi$/,
    why: "get_state.model is the fleet's model row (the contract's AgentModelRow), not pi's Model: no baseUrl (provider endpoints stay on the server) and no price table",
  },
  {
    where: /^response state-\d\.data\.model\.(available|defaultThinkingLevel): only fleet$/,
    why: "the fleet's model row adds `available` and `defaultThinkingLevel` (extra fields are allowed by the contract)",
  },
  {
    where: /^response (state-\d|stats-1)\.data\.sessionFile: only pi$/,
    why: "sessionFile is a server path: the fleet strips it (notes/pi-sdk.md §7, path-bearing fields)",
  },
  {
    where: /^response new-1\.data\.sessionId: only fleet$/,
    why: "new_session names the fleet session it created (the socket moves to it, as pi's process rebinds); pi's answer is only {cancelled}",
  },
  {
    where: /^response commands-1\.data\.commands: pi \d+ items \/ fleet 0 items$/,
    why: "pi's CLI loads its bundled llama.cpp extension (command `llama`); the fleet's isolated resource loader loads no extension, prompt template or skill of its own (and would strip sourceInfo paths)",
  },
  {
    where:
      /^event message_start\(assistant\)\.message\.(responseId: only (pi|fleet)|content: pi 0 items \/ fleet \d+ items)$/,
    why: "timing, and a known fleet defect: pi's assistant message_start carries the live partial message; pi writes it at once (responseId present or not depending on the first chunk), the worker's EventPublisher serializes it a tick later, when text deltas may already be in it",
  },
  {
    where:
      /^event (message_(start|end)\(system\)\.message|agent_end\.messages\[\d+\])\.(sections|toolsAdded): only pi$/,
    why: "pi's system message names the project's path and pi's install paths: the fleet's events show it blank (role, empty content, timestamp), as its history does (sanitize.ts publicEventMessage)",
  },
  {
    where: /^event message_update:[a-z_]+\.usage: only pi$/,
    why: "the fleet's lean wire form drops message_update.usage (pi's RPC form carries the partial usage); the final usage arrives with message_end",
  },
];

/** pi events the fleet does not emit, by step, with the reason. Removed from pi's side before comparing. */
const PI_ONLY_EVENTS: { step: string; drop: (e: Rec) => boolean; why: string }[] = [
  {
    step: "prompt after abort",
    drop: (e) =>
      e.type === "queue_update" ||
      ((e.type === "message_start" || e.type === "message_end") &&
        (e.message as Rec).role === "user" &&
        JSON.stringify(e.message).includes("[[reply:steered]]")),
    why: "pi keeps the steer queued when its run is aborted and delivers it with the next prompt; the fleet clears input queued for a run that did not finish (run-executor), so it never leaks into the next run (hence also get_state.pendingMessageCount 1 vs 0 after the abort)",
  },
];

/** Events only the fleet emits, by step, with the reason. Removed from the fleet's side before comparing. */
const FLEET_ONLY_EVENTS: { steps: string[]; drop: (e: Rec) => boolean; why: string }[] = [
  {
    steps: ["streaming: prompt, prompt again, steer, abort", "prompt after abort"],
    drop: (e) =>
      e.type === "queue_update" &&
      (e.steering as unknown[] | undefined)?.length === 0 &&
      (e.followUp as unknown[] | undefined)?.length === 0,
    why: "the fleet clears input queued for a run that did not finish (see PI_ONLY_EVENTS, 'prompt after abort'); pi's clear_queue announces the now empty queue, after the run (so in this step or the next)",
  },
];

/** Differences that are not on the allow-list. */
function unexplained(lines: readonly string[]): string[] {
  return lines.filter((line) => !ALLOWED.some((a) => a.where.test(line)));
}

/**
 * pi's response normalized for comparison: its system messages are left out of `get_messages`
 * (pi's system prompt names the cwd and pi's install paths; the fleet never serves it, here or in
 * the session history), and `get_fork_messages` loses the steer pi kept from the aborted run (see
 * PI_ONLY_EVENTS, "prompt after abort").
 */
function normalized(record: Rec): Rec {
  const data = record.data as Rec | undefined;
  if (!data || !Array.isArray(data.messages)) return record;
  if (record.command === "get_messages") {
    return {
      ...record,
      data: { ...data, messages: data.messages.filter((m) => (m as Rec)?.role !== "system") },
    };
  }
  if (record.command === "get_fork_messages") {
    return {
      ...record,
      data: { ...data, messages: data.messages.filter((m) => (m as Rec)?.text !== "[[reply:steered]]") },
    };
  }
  return record;
}

/** Event types in order (`message_start(role)`), runs of `message_update` collapsed when asked. */
function eventTypes(events: readonly Rec[], collapseUpdates: boolean): string[] {
  const out: string[] = [];
  for (const e of events) {
    const role = (e.message as Rec | undefined)?.role;
    const type = `${String(e.type)}${typeof role === "string" ? `(${role})` : ""}`;
    if (collapseUpdates && type === "message_update" && out.at(-1) === type) continue;
    out.push(type);
  }
  return out;
}

/** An event's kind for shape comparison: type, message role, assistantMessageEvent type. */
function eventKind(e: Rec): string {
  const role = (e.message as Rec | undefined)?.role;
  const inner = (e.assistantMessageEvent as Rec | undefined)?.type;
  return `${String(e.type)}${typeof role === "string" ? `(${role})` : ""}${typeof inner === "string" ? `:${inner}` : ""}`;
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

let llm: FakeLlm;
let stack: Stack;
let root: string;
let pi: Awaited<ReturnType<typeof startPi>> | undefined;
let fleet: Peer | undefined;
/** The fleet session the socket opened on. */
let fleetSession = "";

beforeAll(async () => {
  llm = await startFakeLlm();
  root = await mkdtemp(join(tmpdir(), "pi-rpc-parity-"));
  const [started] = await Promise.all([
    startStack({ redisUrl: inject("redisUrl"), prefix: uniquePrefix("e2e rpc parity") }),
    (async () => {
      pi = await startPi(llm, root);
    })(),
  ]);
  stack = started;
  await registerFakeProvider(stack.url, llm);
  const project = await createProject(stack.url, "rpc-parity");
  fleetSession = await createSession(stack.url, project);
  fleet = await connectFleet(
    `${stack.url.replace("http", "ws")}/v1/projects/${project}/sessions/${fleetSession}/rpc`,
  );
});

afterAll(async () => {
  await Promise.all([pi?.close(), fleet?.close()]);
  await stopAllStacks();
  await llm?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

describe("pi RPC over WebSocket vs pi --mode rpc", () => {
  it("answers the same script with the same responses, error texts and events", async () => {
    if (!pi || !fleet) throw new Error("peers did not start");
    // pi answers nothing before it is up: wait for a first response (the script then starts clean).
    pi.sendRaw(JSON.stringify({ id: "ready", type: "get_commands" }));
    await waitFor(() => pi?.records.find((r) => r.id === "ready"), {
      timeoutMs: 20_000,
      message: "pi started",
    });
    pi.records.length = 0;

    const [piSteps, fleetSteps] = await Promise.all([runScript(pi), runScript(fleet)]);
    const dump = process.env.RPC_PARITY_DUMP;
    if (dump) {
      await mkdir(dump, { recursive: true });
      await writeFile(join(dump, "pi.json"), JSON.stringify(piSteps, null, 2));
      await writeFile(join(dump, "fleet.json"), JSON.stringify(fleetSteps, null, 2));
    }

    // Every mismatch is collected, so one run shows them all.
    const problems: string[] = [];
    const same = (what: string, fleetValue: unknown, piValue: unknown) => {
      if (JSON.stringify(fleetValue) !== JSON.stringify(piValue)) {
        problems.push(`${what}: pi ${JSON.stringify(piValue)} / fleet ${JSON.stringify(fleetValue)}`);
      }
    };
    const differences: string[] = [];
    expect(fleetSteps.map((s) => s.name)).toEqual(piSteps.map((s) => s.name));
    for (const [i, piStep] of piSteps.entries()) {
      const fleetStep = fleetSteps[i] as Step;
      const name = piStep.name;
      // Responses: the same ones in the same order, the same outcome, pi's exact error texts.
      const key = (r: Rec) => `${String(r.id)}/${String(r.command)}`;
      same(`${name}: responses`, fleetStep.responses.map(key), piStep.responses.map(key));
      for (const [j, piResponse] of piStep.responses.entries()) {
        const fleetResponse = fleetStep.responses[j];
        if (!fleetResponse) continue;
        same(`${name}: ${key(piResponse)} success`, fleetResponse.success, piResponse.success);
        same(`${name}: ${key(piResponse)} error`, fleetResponse.error, piResponse.error);
        same(`${name}: ${key(piResponse)} has id`, "id" in fleetResponse, "id" in piResponse);
        shapeDiff(
          shape(normalized(piResponse)),
          shape(fleetResponse),
          `response ${String(piResponse.id)}`,
          differences,
        );
      }
      // Events: pi's types in pi's order (updates collapsed where timing decides how many), no fleet events.
      const allowed = PI_ONLY_EVENTS.filter((a) => a.step === name);
      const piEvents = piStep.events.filter((e) => !allowed.some((a) => a.drop(e)));
      const fleetOnly = FLEET_ONLY_EVENTS.filter((a) => a.steps.includes(name));
      const fleetEvents = fleetStep.events.filter((e) => !fleetOnly.some((a) => a.drop(e)));
      const collapse = name.startsWith("streaming");
      same(`${name}: event types`, eventTypes(fleetEvents, collapse), eventTypes(piEvents, collapse));
    }
    // Each kind of event: the same shape (first occurrence against first occurrence).
    const firstOf = (steps: Step[]) => {
      const seen = new Map<string, Rec>();
      for (const e of steps.flatMap((s) => s.events)) if (!seen.has(eventKind(e))) seen.set(eventKind(e), e);
      return seen;
    };
    const fleetKinds = firstOf(fleetSteps);
    for (const [kind, piEvent] of firstOf(piSteps)) {
      const fleetEvent = fleetKinds.get(kind);
      if (fleetEvent) shapeDiff(shape(piEvent), shape(fleetEvent), `event ${kind}`, differences);
    }

    // Values that must be equal, not only alike.
    const response = (steps: Step[], id: unknown) =>
      steps.flatMap((s) => s.responses).find((r) => r.id === id) as Rec;
    const data = (steps: Step[], id: unknown) => (response(steps, id)?.data ?? {}) as Rec;
    for (const id of ["text-1", "levels-1", "messages-2"]) {
      same(`${id} data`, data(fleetSteps, id), data(piSteps, id));
    }
    same("new-1 cancelled", data(fleetSteps, "new-1").cancelled, data(piSteps, "new-1").cancelled);
    for (const id of ["state-1", "state-2", "state-3", "state-4"]) {
      for (const field of [
        "thinkingLevel",
        "isStreaming",
        "isCompacting",
        "steeringMode",
        "followUpMode",
        "sessionName",
        "autoCompactionEnabled",
      ]) {
        same(`${id}.${field}`, data(fleetSteps, id)[field], data(piSteps, id)[field]);
      }
    }
    same("state-2.sessionName", data(fleetSteps, "state-2").sessionName, "parity run");
    const forkTexts = (record: Rec) => ((record.data as Rec).messages as Rec[]).map((m) => m.text);
    same(
      "fork messages",
      forkTexts(response(fleetSteps, "fork-messages-1")),
      forkTexts(normalized(response(piSteps, "fork-messages-1"))),
    );
    // The session moved: a new pi session id, and the new session is empty on both sides.
    expect(data(fleetSteps, "state-4").sessionId).not.toBe(data(fleetSteps, "state-1").sessionId);
    expect(data(piSteps, "state-4").sessionId).not.toBe(data(piSteps, "state-1").sessionId);
    // The fleet's get_state names the session by the id its clients use (the socket's URL, the
    // id new_session answered; what switch_session takes), never by pi's internal header id.
    for (const id of ["state-1", "state-2", "state-3", "stats-1"]) {
      expect(data(fleetSteps, id).sessionId, `${id}.sessionId`).toBe(fleetSession);
    }
    expect(data(fleetSteps, "state-4").sessionId, "state-4.sessionId").toBe(
      data(fleetSteps, "new-1").sessionId,
    );

    expect(problems, "responses and events that differ").toEqual([]);
    expect(unexplained(differences), "differences not on the allow-list").toEqual([]);
  });
});
