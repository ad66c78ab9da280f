/**
 * One `…/sessions/{id}/rpc` WebSocket: pi's RPC protocol (`pi --mode rpc`) for one session, one
 * JSON record per text frame. Commands run through the REST routes (`app.inject`, with the
 * upgrade request's credentials), so validation, roles and limits are those of REST; pi's events
 * come from the session stream, subscribed live from the moment the socket opened.
 *
 * How pi's semantics map onto the fleet:
 * - `prompt` is answered when pi accepts it, as in pi: the run is queued, and the response goes
 *   out just before the run's `agent_start` (pi answers after its preflight). A run that ends
 *   before pi started it (pi's preflight failed, e.g. "No API key found for …"; cancelled;
 *   interrupted) answers `success: false` with its error instead. A run still waiting for a
 *   worker after `promptAnswerWaitMs` is answered `success: true` then (pi's RpcClient gives up
 *   on a response after 30 s).
 * - "Streaming" is pi's `isStreaming`: from the prompt until `agent_settled`. A prompt without
 *   `streamingBehavior` meanwhile gets pi's "Agent is already processing…" error; the fleet does
 *   not queue it behind the running run.
 * - Events: pi's events (and `extension_ui_request` / `extension_error`) are forwarded exactly as
 *   they are on the stream; fleet events (`run_*`, `stream_*`) are dropped, except a run's end
 *   when pi's own events did not end it (no `agent_end`: the worker died, or the run failed
 *   before pi started it after its prompt was answered): then the fleet event is forwarded as
 *   it is, so the client is not left waiting for an `agent_end` that never comes.
 * - `new_session`, `fork`, `clone` answered with a new `sessionId` (and `switch_session` with a
 *   session id as `sessionPath`) move the connection to that session, as pi's RPC process
 *   rebinds to its new session: later commands and events are the new session's.
 * - Session ids are the fleet's throughout: `get_state` and `get_session_stats` (answered by the
 *   worker, pi-runtime's commands) name the session the connection drives by its id, the one in
 *   the socket's URL or the last `new_session` / `fork` / `clone` answer, and what `switch_session`
 *   takes; pi's internal header id is never shown. Answers pass through unchanged.
 * - `prompt`, `steer`, `follow_up`, `abort` and the session-changing commands are handled in
 *   arrival order; every other command runs at once (pi handles each line as it arrives too).
 */
import { isEntityId, RUN_END_EVENT_TYPES } from "@pi-fleet/contracts";
import { type StreamEntry, StreamSubscription } from "@pi-fleet/streams";
import type { FastifyInstance } from "fastify";
import type { WebSocket } from "ws";
import type { RequestAuth } from "../auth/request-auth.ts";
import { injectRoute, type SocketClient } from "../inject-route.ts";
import { pendingUi } from "../routes/events.ts";
import type { GatewayServices } from "../services.ts";
import { closeSocket, FrameFlow, keepAlive } from "../ws/socket-lifecycle.ts";
import {
  ALREADY_PROCESSING,
  abortCall,
  COMMAND_EVENT_TYPES,
  commandCall,
  commandResponse,
  deliverCall,
  extensionUiAnswer,
  FLEET_EVENT_TYPES,
  isRecord,
  PI_RPC_COMMANDS,
  parseRecord,
  promptCall,
  type RouteCall,
  type RpcCommand,
  type RpcRecord,
  routeErrorText,
  rpcError,
  rpcSuccess,
  SESSION_CHANGING_COMMANDS,
  splitInput,
  stateCall,
  unknownCommandResponse,
} from "./rpc-commands.ts";

/** Limits of one connection. */
export interface RpcLimits {
  /** Unsent bytes allowed before the client is cut (close 1013). */
  maxBufferedBytes: number;
  /** How long a queued prompt may wait for its run to start before it is answered anyway (ms). */
  promptAnswerWaitMs: number;
  /** WebSocket ping interval (ms); a socket silent for two is cut (socket-lifecycle.ts). */
  pingIntervalMs: number;
  /**
   * How long the session stream may take to go live (ms), when the socket opens or moves to
   * another session; beyond it the socket closes with 1011 and the frames waiting for it are let go.
   */
  streamOpenTimeoutMs: number;
}

/** The session a connection drives. */
export interface RpcTarget {
  projectId: string;
  sessionId: string;
}

/** What the connection has seen of the session's current run on the stream. */
interface RunView {
  /** Undefined when the socket opened while the run was already going. */
  runId: string | undefined;
  /** pi's loop ended (`agent_end`) and did not restart (a retry starts it again). */
  agentEnded: boolean;
  /** `agent_settled` seen: pi would not report the agent as streaming any more. */
  settled: boolean;
}

/** A prompt this connection queued, by run id. */
interface PromptWait {
  /** The command's `id`, echoed in the response. */
  id: unknown;
  /** The response went out (success, or the fallback after the wait). */
  answered: boolean;
  timer?: NodeJS.Timeout;
}

type Outcome = RpcRecord | undefined;

/** User input and abort: handled in arrival order, like the session-changing commands. */
const LANE_COMMANDS: ReadonlySet<string> = new Set(["prompt", "steer", "follow_up", "abort"]);

/** Serves pi's RPC protocol on one WebSocket. */
export class RpcConnection {
  private readonly socket: WebSocket;
  private readonly app: FastifyInstance;
  private readonly s: GatewayServices;
  private readonly auth: RequestAuth;
  private readonly client: SocketClient;
  private readonly flow: FrameFlow;
  private readonly limits: RpcLimits;
  private readonly projectId: string;
  private target: string;
  private subscription: StreamSubscription | undefined;
  /** Settles when the current subscription is live; frames wait for it. */
  private ready: Promise<void>;
  /** Ordered handling of input and session-changing commands. */
  private lane: Promise<void> = Promise.resolve();
  private current: RunView | undefined;
  private readonly prompts = new Map<string, PromptWait>();
  /** While > 0, stream entries wait in `held` (a prompt's run id is not known yet). */
  private holds = 0;
  private held: StreamEntry[] = [];
  private closed = false;

  constructor(
    socket: WebSocket,
    app: FastifyInstance,
    auth: RequestAuth,
    client: SocketClient,
    target: RpcTarget,
    limits: RpcLimits,
  ) {
    this.socket = socket;
    this.app = app;
    this.s = app.services;
    this.auth = auth;
    this.client = client;
    this.flow = new FrameFlow(socket);
    keepAlive(socket, limits.pingIntervalMs);
    this.limits = limits;
    this.projectId = target.projectId;
    this.target = target.sessionId;
    this.ready = this.subscribe();
    socket.on("message", (data) => this.onMessage(data.toString()));
    socket.on("close", () => this.dispose());
    socket.on("error", () => this.dispose());
  }

  /** The session the connection drives now. */
  get sessionId(): string {
    return this.target;
  }

  /** Closes the socket (1001 on shutdown, 1008 when the credential was revoked). */
  close(code: number, reason: string): void {
    // Also when already closing (cut as lagging): a shutdown then shortens its close deadline.
    closeSocket(this.socket, code, reason);
    this.dispose();
  }

  // -------------------------------------------------------------------------------------------
  // Client records
  // -------------------------------------------------------------------------------------------

  /**
   * One frame, parsed at once — a user input's text and images are serialised into its route call
   * then, so the frame's text and object are not kept while the command waits for the stream or
   * its turn — and handled once the stream is live. Never throws (a throw here would reach ws).
   */
  private onMessage(frame: string): void {
    let command: RpcCommand = {};
    try {
      const parsed = parseRecord(frame);
      let call: RouteCall | undefined;
      if ("record" in parsed) ({ command, call } = splitInput(parsed.record));
      const work = "record" in parsed ? this.onCommand(command, call) : this.onParseError(parsed.response);
      this.flow.track(work).catch((err: unknown) => this.frameFailed(command, err));
    } catch (err) {
      this.frameFailed(command, err);
    }
  }

  /** A frame that is not JSON: pi's parse error, after the answers of earlier frames are due. */
  private async onParseError(response: RpcRecord): Promise<void> {
    await this.ready;
    if (!this.closed) this.respond(response);
  }

  /**
   * A frame whose handling failed outside its command (an extension UI answer whose route call
   * failed, a bug): pi's catch-all answer, naming the command as pi does (`id` and `type` of what
   * was parsed; pi's `parse` is only for a frame that is not JSON), with "internal error" as its
   * text (the cause goes to the log); the connection stays open. Never throws.
   */
  private frameFailed(command: RpcCommand, err: unknown): void {
    this.app.log.warn({ err: (err as Error).message, command: command.type }, "rpc frame failed");
    try {
      this.respond(rpcError(command.id, command.type, "internal error"));
    } catch {
      this.close(1011, "internal error");
    }
  }

  /** One parsed record; `call` is the route call of a user input (see `splitInput`). */
  private async onCommand(record: RpcCommand, call: RouteCall | undefined): Promise<void> {
    await this.ready;
    if (this.closed) return;
    if (record.type === "extension_ui_response") {
      await this.answerUi(record);
      return;
    }
    const type = record.type;
    if (typeof type !== "string" || !PI_RPC_COMMANDS.has(type)) {
      this.respond(unknownCommandResponse(record));
      return;
    }
    const run = () =>
      this.execute(type, record, call).catch((err: unknown) => this.failed(record, type, err));
    if (LANE_COMMANDS.has(type) || SESSION_CHANGING_COMMANDS.has(type)) this.inLane(run);
    else this.respond(await run());
  }

  /** Runs `handler` after the lane's earlier work; its response goes out when it is done. */
  private inLane(handler: () => Promise<Outcome>): void {
    this.lane = this.lane
      .then(async () => {
        if (this.closed) return;
        this.respond(await handler());
      })
      // A step that threw anyway (handlers answer their own errors) must not stop the lane: every
      // later command would wait for ever.
      .catch((err: unknown) => this.app.log.error({ err }, "rpc lane step failed"));
    // Queued work counts as in flight: a client cannot stack up commands faster than they run.
    void this.flow.track(this.lane);
  }

  /** pi's catch-all: a command that threw answers `success: false` with the message. */
  private failed(record: RpcCommand, type: string, err: unknown): Outcome {
    this.app.log.warn({ err: (err as Error).message, command: type }, "rpc command failed");
    return rpcError(record.id, type, err instanceof Error ? err.message : String(err));
  }

  private async execute(type: string, command: RpcCommand, input: RouteCall | undefined): Promise<Outcome> {
    switch (type) {
      case "prompt":
        return this.prompt(command, input ?? promptCall(command));
      case "steer":
      case "follow_up":
        return this.deliver(command, type, input ?? deliverCall(command, type));
      case "abort": {
        const res = await this.call(abortCall());
        return res.status < 400
          ? rpcSuccess(command.id, "abort")
          : rpcError(command.id, "abort", routeErrorText(res.status, res.body));
      }
      case "switch_session":
        return this.switchSession(command);
      default:
        return this.command(command, type);
    }
  }

  /** pi's `prompt` (`call`: its route call): refused while streaming (unless `streamingBehavior`), else queued. */
  private async prompt(command: RpcCommand, call: RouteCall): Promise<Outcome> {
    const { id } = command;
    const streaming = await this.isStreaming();
    if (streaming && command.streamingBehavior === undefined)
      return rpcError(id, "prompt", ALREADY_PROCESSING);
    this.holds++;
    try {
      const res = await this.call(call);
      if (res.status >= 400) return rpcError(id, "prompt", routeErrorText(res.status, res.body));
      const { runId, delivered } = res.body as { runId?: unknown; delivered?: unknown };
      if (typeof runId !== "string") return rpcError(id, "prompt", "the prompt was not accepted");
      if (streaming || delivered === "steer" || delivered === "followUp") {
        // pi queues a prompt with streamingBehavior into the running agent and answers at once.
        this.track(runId, id);
        return rpcSuccess(id, "prompt");
      }
      const wait: PromptWait = { id, answered: false };
      wait.timer = setTimeout(
        () => this.answerPrompt(runId, rpcSuccess(id, "prompt")),
        this.limits.promptAnswerWaitMs,
      );
      this.prompts.set(runId, wait);
      return undefined; // answered from the stream
    } finally {
      this.release();
    }
  }

  /** pi's `steer` / `follow_up` (`call`: its route call): into the running run (idle: the fleet queues a prompt). */
  private async deliver(command: RpcCommand, type: "steer" | "follow_up", call: RouteCall): Promise<Outcome> {
    this.holds++;
    try {
      const res = await this.call(call);
      if (res.status >= 400) return rpcError(command.id, type, routeErrorText(res.status, res.body));
      const { runId, delivered } = res.body as { runId?: unknown; delivered?: unknown };
      // A new run (the session was idle): its end is forwarded if pi's events do not end it.
      if (delivered === "prompt" && typeof runId === "string") this.track(runId, command.id);
      return rpcSuccess(command.id, type);
    } finally {
      this.release();
    }
  }

  /** Any other pi command: the worker's command switch (`POST …/commands`). */
  private async command(command: RpcCommand, type: string): Promise<Outcome> {
    const res = await this.call(commandCall(command));
    if (res.status >= 400) return rpcError(command.id, type, routeErrorText(res.status, res.body));
    const response = commandResponse(command.id, type, res.body);
    const data = response.data;
    if (
      SESSION_CHANGING_COMMANDS.has(type) &&
      response.success === true &&
      isRecord(data) &&
      data.cancelled === false &&
      typeof data.sessionId === "string"
    ) {
      await this.moveTo(data.sessionId);
    }
    return response;
  }

  /**
   * pi's `switch_session {sessionPath}`: `sessionPath` is a session id of this project (the fleet
   * has no session paths). The connection moves to it; the session left behind is not touched.
   */
  private async switchSession(command: RpcCommand): Promise<Outcome> {
    const target = command.sessionPath;
    // Checked before it becomes part of a route URL (a "." or ".." would be resolved away).
    if (typeof target !== "string" || !isEntityId(target)) {
      return rpcError(
        command.id,
        "switch_session",
        'switch_session: "sessionPath" must be a session id of this project',
      );
    }
    const res = await this.call(stateCall(), target);
    if (res.status >= 400)
      return rpcError(command.id, "switch_session", routeErrorText(res.status, res.body));
    await this.moveTo(target);
    return rpcSuccess(command.id, "switch_session", { cancelled: false });
  }

  /** pi's `extension_ui_response`: answers the pending dialog; nothing is sent back (as in pi). */
  private async answerUi(record: RpcCommand): Promise<void> {
    const answer = extensionUiAnswer(record);
    if (!answer) return;
    const res = await this.call({
      method: "POST",
      path: `/extension-ui/${encodeURIComponent(answer.requestId)}/response`,
      body: answer.body,
    });
    if (res.status >= 400) {
      this.app.log.debug(
        { status: res.status, requestId: answer.requestId },
        "rpc extension UI answer refused",
      );
    }
  }

  /**
   * pi's `isStreaming`: a prompt of this connection is waiting to start, or the session has a
   * queued or running run whose pi loop has not settled yet.
   */
  private async isStreaming(): Promise<boolean> {
    for (const wait of this.prompts.values()) if (!wait.answered) return true;
    const res = await this.call(stateCall());
    if (res.status >= 400) throw new Error(routeErrorText(res.status, res.body));
    const state = res.body as { status?: unknown; runId?: unknown; queueLength?: unknown };
    if (state.status === "idle") return false;
    // pi is done (agent_settled) and the fleet is only closing the run: not streaming any more.
    const run = this.current;
    return !(
      state.status === "running" &&
      state.queueLength === 0 &&
      run?.settled === true &&
      (run.runId === undefined || run.runId === state.runId)
    );
  }

  // -------------------------------------------------------------------------------------------
  // Session stream
  // -------------------------------------------------------------------------------------------

  /** Subscribes to the current session's stream from now, then re-sends its pending dialogs. */
  private async subscribe(): Promise<void> {
    const ref = { org: this.auth.org, project: this.projectId, session: this.target };
    const subscription: StreamSubscription = new StreamSubscription(
      this.s.events,
      this.s.hub,
      ref,
      undefined,
      {
        entry: (entry) => {
          if (this.subscription === subscription) this.onEntry(entry);
        },
        // Live from now there is nothing to replay; a stream that was lost simply carries on.
        reset: () => {},
        failed: () => this.close(1011, "stream unavailable"),
        // pi's protocol has no such event: the socket's session is gone, so is the socket.
        ended: () => {
          if (this.subscription === subscription) this.close(1000, "session deleted");
        },
      },
    );
    this.subscription = subscription;
    let timer: NodeJS.Timeout | undefined;
    try {
      // Frames wait for this (up to 64 of them, each up to the frame limit): never indefinitely,
      // as when the hub cannot subscribe (Redis unreachable) and would retry for ever.
      await Promise.race([
        subscription.start(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`stream not live within ${this.limits.streamOpenTimeoutMs} ms`)),
            this.limits.streamOpenTimeoutMs,
          );
        }),
      ]);
    } catch (err) {
      this.app.log.warn({ err: (err as Error).message }, "rpc stream subscription failed");
      this.close(1011, "stream unavailable");
      return;
    } finally {
      clearTimeout(timer);
    }
    for (const pending of await pendingUi(this.s, ref, this.app.log)) {
      if (this.subscription !== subscription) return;
      this.send(JSON.stringify(pending));
    }
  }

  /** Moves the connection to another session of the project (pi's rebind). */
  private async moveTo(sessionId: string): Promise<void> {
    if (sessionId === this.target || this.closed) return;
    const old = this.subscription;
    this.subscription = undefined;
    await old?.close();
    // Prompts waiting on the old session were accepted there; they are answered now.
    for (const [runId, wait] of this.prompts)
      if (!wait.answered) this.answerPrompt(runId, rpcSuccess(wait.id, "prompt"));
    this.clearPrompts();
    this.current = undefined;
    this.held = [];
    this.target = sessionId;
    this.ready = this.subscribe();
    await this.ready;
  }

  private onEntry(entry: StreamEntry): void {
    if (this.holds > 0) this.held.push(entry);
    else this.process(entry);
  }

  private release(): void {
    this.holds--;
    if (this.holds > 0) return;
    const held = this.held;
    this.held = [];
    for (const entry of held) this.process(entry);
  }

  /** One stream entry, in order: run bookkeeping, then forwarded or dropped. */
  private process(entry: StreamEntry): void {
    let event: { type?: unknown; runId?: unknown; [key: string]: unknown };
    try {
      event = JSON.parse(entry.data) as typeof event;
    } catch {
      return;
    }
    const type = typeof event.type === "string" ? event.type : "";
    if (type === "run_started" && typeof event.runId === "string") {
      this.current = { runId: event.runId, agentEnded: false, settled: false };
      return;
    }
    if (RUN_END_EVENT_TYPES.has(type)) {
      this.runEnded(event, entry.data);
      return;
    }
    if (FLEET_EVENT_TYPES.has(type)) return;
    // A pi event (or an extension UI request / error). A run whose run_started came before this
    // subscription is tracked from its first event; a command's own events between runs are not
    // a run.
    if (COMMAND_EVENT_TYPES.has(type)) {
      this.send(entry.data);
      return;
    }
    this.current ??= { runId: undefined, agentEnded: false, settled: false };
    if (type === "agent_start") {
      this.current.agentEnded = false;
      this.current.settled = false;
      const runId = this.current.runId;
      if (runId !== undefined) this.answerPrompt(runId, undefined);
    } else if (type === "agent_end") {
      this.current.agentEnded = true;
    } else if (type === "agent_settled") {
      this.current.settled = true;
    }
    this.send(entry.data);
  }

  /** A run's end on the stream: answers its waiting prompt, or forwards it when pi did not end it. */
  private runEnded(event: { type?: unknown; runId?: unknown; [key: string]: unknown }, raw: string): void {
    const runId = typeof event.runId === "string" ? event.runId : undefined;
    const wait = runId === undefined ? undefined : this.prompts.get(runId);
    const run = this.current;
    const wasCurrent = run !== undefined && (run.runId === undefined || run.runId === runId);
    if (wasCurrent) this.current = undefined;
    if (runId !== undefined && wait && !wait.answered) {
      this.answerPrompt(runId, endedBeforeStart(wait.id, event));
      this.prompts.delete(runId);
      return;
    }
    if (runId !== undefined) this.forget(runId);
    if (wasCurrent ? !run.agentEnded : wait !== undefined) this.send(raw);
  }

  /**
   * Sends a waiting prompt's response once: `response` (undefined = pi's success) and marks it
   * answered. No-op when there is none or it was answered.
   */
  private answerPrompt(runId: string, response: RpcRecord | undefined): void {
    const wait = this.prompts.get(runId);
    if (!wait || wait.answered) return;
    wait.answered = true;
    clearTimeout(wait.timer);
    this.respond(response ?? rpcSuccess(wait.id, "prompt"));
  }

  /** Remembers a run this connection started or joined and already answered for. */
  private track(runId: string, id: unknown): void {
    if (!this.prompts.has(runId)) this.prompts.set(runId, { id, answered: true });
  }

  private forget(runId: string): void {
    clearTimeout(this.prompts.get(runId)?.timer);
    this.prompts.delete(runId);
  }

  private clearPrompts(): void {
    for (const wait of this.prompts.values()) clearTimeout(wait.timer);
    this.prompts.clear();
  }

  // -------------------------------------------------------------------------------------------
  // Transport
  // -------------------------------------------------------------------------------------------

  /** Executes a REST route of `sessionId` (default: the current one) as this client. */
  private async call(route: RouteCall, sessionId = this.target): Promise<{ status: number; body: unknown }> {
    const url = `/v1/projects/${encodeURIComponent(this.projectId)}/sessions/${encodeURIComponent(sessionId)}${route.path}`;
    return injectRoute(this.app, this.client, {
      method: route.method,
      url,
      ...(route.body === undefined ? {} : { payload: route.body }),
    });
  }

  private respond(record: Outcome): void {
    if (record) this.send(JSON.stringify(record));
  }

  private send(text: string): void {
    if (this.closed || this.socket.readyState !== this.socket.OPEN) return;
    if (this.socket.bufferedAmount > this.limits.maxBufferedBytes) {
      // pi would stall the agent until its reader catches up; a fleet run cannot wait for one client.
      this.close(1013, "client too slow");
      return;
    }
    this.socket.send(text);
  }

  private dispose(): void {
    if (this.closed) return;
    this.closed = true;
    this.clearPrompts();
    this.held = [];
    const subscription = this.subscription;
    this.subscription = undefined;
    void subscription?.close();
  }
}

/** The response of a prompt whose run ended before pi started it (pi: a failed preflight). */
function endedBeforeStart(id: unknown, event: { type?: unknown; [key: string]: unknown }): RpcRecord {
  switch (event.type) {
    case "run_failed":
      return rpcError(id, "prompt", typeof event.error === "string" ? event.error : "the run failed");
    case "run_cancelled":
      return rpcError(id, "prompt", "The prompt was cancelled before it started");
    case "run_aborted":
      return rpcError(id, "prompt", "The prompt was aborted before it started");
    case "run_interrupted":
      return rpcError(
        id,
        "prompt",
        `The prompt was interrupted before it started (${typeof event.reason === "string" ? event.reason : "interrupted"})`,
      );
    default:
      // Finished without pi's loop (an input handler took the prompt): pi answers success.
      return rpcSuccess(id, "prompt");
  }
}
