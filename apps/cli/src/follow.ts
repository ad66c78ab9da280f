/**
 * Following a session stream (`prompt --follow`, `tail`): the client's SSE helper resumes after
 * any disconnect from the last offset seen, this loop decides what to show (one run's events, or
 * everything), renders it (text, or NDJSON `{offset, event}` lines with `--json`), keeps a spinner
 * going while nothing is printed, and stops at the run's end, when the session is idle
 * (`--until-idle`) or on Ctrl-C.
 */
import { compareOffsets, type StreamItem, type WireEvent } from "@pi-fleet/client";
import type { Context } from "./context.ts";
import { CliError, ExitCode, toCliError } from "./errors.ts";
import {
  EventRenderer,
  isDialog,
  outcomeOfStatus,
  type RenderOptions,
  type RunOutcome,
  runOutcome,
} from "./render-events.ts";

/** What to follow and when to stop. */
export interface FollowOptions {
  /** Start after this offset (`"0"`: everything retained). */
  after: string | undefined;
  /** Show only this run's events and stop when it ends. */
  runId?: string;
  /** Runs ahead of `runId` when it was queued (for the spinner). */
  position?: number;
  /** Stop once the session is idle and every event up to its last offset was shown. */
  untilIdle?: boolean;
  /** Rendering options (human output). */
  render?: RenderOptions;
}

/** How following ended. */
export interface FollowResult {
  /** The followed run's outcome (`runId` given and its end seen, or read from the run record). */
  outcome?: RunOutcome;
  /**
   * The run's terminal event (for `run_failed`'s error): the one on the stream, or, when that was
   * trimmed or lost, one made from the run record (`{type: "run_<status>", runId, error?, reason?,
   * usage?}`, no offset).
   */
  endEvent?: WireEvent;
  /** Ctrl-C stopped it. */
  interrupted: boolean;
  /** The offset of the last event seen (resume from it). */
  lastOffset: string | undefined;
}

interface SessionState {
  status: "idle" | "queued" | "running";
  lastOffset: string;
}

/** What `GET …/runs/{runId}` answers (the fields used here). */
interface RunRecord {
  status: string;
  startOffset?: string;
  endOffset?: string;
  error?: string;
  reason?: string;
  usage?: unknown;
}

/** The terminal event a run record stands for, when its own event is gone from the stream. */
export function endEventOfRecord(runId: string, outcome: RunOutcome, run: RunRecord): WireEvent {
  return {
    type: `run_${outcome}`,
    runId,
    ...(run.error === undefined ? {} : { error: run.error }),
    ...(run.reason === undefined ? {} : { reason: run.reason }),
    ...(run.usage === undefined ? {} : { usage: run.usage }),
  };
}

/**
 * Whether the events that follow a `stream_reset` whose first retained entry is `first` belong
 * to the run (it started before them and had not ended before them), so they are shown until its
 * `run_started` is. Without `first` (the stream was lost), only a running run's.
 */
function runSpansReset(run: RunRecord, first: string | undefined): boolean {
  if (first === undefined) return run.status === "running";
  const started =
    run.startOffset === undefined ? run.status === "running" : compareOffsets(run.startOffset, first) < 0;
  const endedBefore = run.endOffset !== undefined && compareOffsets(run.endOffset, first) < 0;
  return started && !endedBefore;
}

/** Follows session `sessionId` of `projectId` as `opts` says; see {@link FollowOptions}. */
export async function follow(
  ctx: Context,
  projectId: string,
  sessionId: string,
  opts: FollowOptions,
): Promise<FollowResult> {
  const { out } = ctx;
  const client = await ctx.client();
  const conn = await ctx.connection();
  const controller = new AbortController();
  let interrupted = false;
  const dispose = ctx.io.onInterrupt(() => {
    interrupted = true;
    controller.abort();
  });
  const renderer = new EventRenderer({ ...opts.render, projectId, sessionId });
  const { runId } = opts;
  let active = runId === undefined;
  let cursor = opts.after;
  let outcome: RunOutcome | undefined;
  let endEvent: WireEvent | undefined;
  const dialogsSeen = new Set<string>();
  /**
   * After a `stream_reset`, when the run has ended: its outcome by the run record, and the
   * stream's last offset then. The retained events are read up to it, as the run's end may be
   * among them; if it is not, the record's outcome is shown (its end event was trimmed or lost).
   */
  let ending: { outcome: RunOutcome; event: WireEvent; stopAt: string; read: string } | undefined;

  const spin = (text: string): void => {
    if (runId !== undefined && renderer.atLineStart) out.showSpinner(text);
  };
  const queuedText = (position: number | undefined): string =>
    position && position > 0 ? `queued behind ${position} run(s)…` : "waiting for a worker…";

  const state = (): Promise<SessionState> =>
    ctx.call("cannot read the session state", (api) =>
      api.GET("/v1/projects/{projectId}/sessions/{id}/state", {
        params: { path: { projectId, id: sessionId } },
      }),
    );
  const caughtUp = (s: SessionState): boolean =>
    s.status === "idle" && compareOffsets(s.lastOffset, cursor ?? "0") <= 0;

  /** Whether `event` belongs to what is followed; updates `active`. */
  const relevant = (event: WireEvent): boolean => {
    if (runId === undefined || event.type === "stream_reset") return true;
    if (typeof event.runId === "string" && event.type.startsWith("run_")) {
      if (event.runId !== runId) return false;
      if (event.type === "run_started") active = true;
      return true;
    }
    return active;
  };

  const show = (item: StreamItem): void => {
    const { event } = item;
    if (out.json) {
      out.jsonLine(item);
      return;
    }
    for (const chunk of renderer.render(event)) out.chunk(chunk);
    switch (event.type) {
      case "run_queued":
        spin(queuedText(typeof event.position === "number" ? event.position : undefined));
        break;
      case "run_started":
      case "tool_execution_end":
        spin("waiting for the model…");
        break;
      case "tool_execution_start":
        spin(`running ${String(event.toolName ?? "a tool")}…`);
        break;
      case "auto_retry_start":
        spin("waiting to retry…");
        break;
    }
  };

  try {
    let known: SessionState | undefined;
    if (opts.untilIdle) {
      known = await state();
      if (caughtUp(known)) return { interrupted, lastOffset: cursor };
    }
    spin(queuedText(opts.position));
    const items = client.events(projectId, sessionId, {
      ...(cursor === undefined ? {} : { after: cursor }),
      signal: controller.signal,
      onReconnect: (info) => {
        const why = info.error instanceof Error ? `${info.reason}: ${info.error.message}` : info.reason;
        out.note(
          `connection lost (${why}); resuming after ${info.cursor ?? "now"} in ${(info.delayMs / 1000).toFixed(1)} s`,
          "yellow",
        );
      },
    });
    for await (const item of items) {
      if (item.offset !== undefined) cursor = item.offset;
      const { event } = item;
      if (isDialog(event)) {
        // Pending dialogs are re-sent to each new connection: show each once.
        const id = String(event.id);
        if (dialogsSeen.has(id)) continue;
        dialogsSeen.add(id);
      }
      if (event.type === "stream_ended") {
        // Nothing more will come: the session (or its project) was deleted while we followed it.
        show(item);
        const what = event.reason === "project_deleted" ? "project" : "session";
        throw new CliError(`the ${what} was deleted`, ExitCode.failure);
      }
      if (relevant(event)) show(item);
      if (runId !== undefined && event.type === "stream_reset") {
        // Events were trimmed or lost: the run's start or end may be among them. Ask the run.
        const run: RunRecord = await ctx.call("cannot read the run", (api) =>
          api.GET("/v1/projects/{projectId}/sessions/{id}/runs/{runId}", {
            params: { path: { projectId, id: sessionId, runId } },
          }),
        );
        const first =
          typeof event.firstOffset === "string" && event.firstOffset !== "0" ? event.firstOffset : undefined;
        active = runSpansReset(run, first);
        const ended = outcomeOfStatus(String(run.status));
        ending = undefined;
        if (ended !== undefined) {
          const gone =
            first !== undefined && run.endOffset !== undefined && compareOffsets(run.endOffset, first) < 0;
          const stopAt = gone ? "0" : (await state()).lastOffset;
          ending = { outcome: ended, event: endEventOfRecord(runId, ended, run), stopAt, read: "0" };
        }
      } else if (ending !== undefined && item.offset !== undefined) {
        ending.read = item.offset;
      }
      const ended = runOutcome(event);
      if (runId !== undefined && ended !== undefined && event.runId === runId) {
        outcome = ended;
        endEvent = event;
        break;
      }
      if (ending !== undefined && compareOffsets(ending.read, ending.stopAt) >= 0) {
        // Every retained event was read and the run's end was not among them: the record says it.
        outcome = ending.outcome;
        endEvent = ending.event;
        if (!out.json) for (const chunk of renderer.render(ending.event)) out.chunk(chunk);
        break;
      }
      if (known !== undefined) {
        const reachedKnown = known.status === "idle" && compareOffsets(cursor ?? "0", known.lastOffset) >= 0;
        if (ended !== undefined || reachedKnown) {
          known = await state();
          if (caughtUp(known)) break;
        }
      }
    }
  } catch (err) {
    if (!controller.signal.aborted) throw toCliError(err, conn.url);
  } finally {
    dispose();
    out.hideSpinner();
    if (!out.json) for (const chunk of renderer.finish()) out.chunk(chunk);
  }
  return {
    interrupted,
    lastOffset: cursor,
    ...(outcome === undefined ? {} : { outcome }),
    ...(endEvent === undefined ? {} : { endEvent }),
  };
}
