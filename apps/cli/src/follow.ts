/**
 * Following a session stream (`prompt --follow`, `tail`): the client's SSE helper resumes after
 * any disconnect from the last offset seen, this loop decides what to show (one run's events, or
 * everything), renders it (text, or NDJSON `{offset, event}` lines with `--json`), keeps a spinner
 * going while nothing is printed, and stops at the run's end, when the session is idle
 * (`--until-idle`) or on Ctrl-C.
 */
import { compareOffsets, type StreamItem, type WireEvent } from "@pi-fleet/client";
import type { Context } from "./context.ts";
import { toCliError } from "./errors.ts";
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
  /** The followed run's outcome (`runId` given and its end seen). */
  outcome?: RunOutcome;
  /** The run's terminal event (for `run_failed`'s error). */
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
      if (relevant(event)) show(item);
      if (runId !== undefined && event.type === "stream_reset") {
        // Events were trimmed or lost: the run's start or end may be among them. Ask the run.
        const run = await ctx.call("cannot read the run", (api) =>
          api.GET("/v1/projects/{projectId}/sessions/{id}/runs/{runId}", {
            params: { path: { projectId, id: sessionId, runId } },
          }),
        );
        const status = String(run.status);
        const ended = outcomeOfStatus(status);
        if (ended !== undefined) {
          outcome = ended;
          break;
        }
        active = status === "running";
      }
      const ended = runOutcome(event);
      if (runId !== undefined && ended !== undefined && event.runId === runId) {
        outcome = ended;
        endEvent = event;
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
