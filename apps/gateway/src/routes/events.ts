/**
 * SSE streams: `GET …/sessions/{id}/events` (a session's wire events) and
 * `GET /v1/projects/{projectId}/events` (project activity: sessions created/deleted, runs queued,
 * started and ended). Resume with `Last-Event-ID` or `?after=<offset>` (`0` = all retained);
 * neither means live only. The subscription registers with the process hub and replays before
 * the response head goes out, so nothing falls between replay and live.
 */
import {
  ApiError,
  ErrorResponse,
  EventsQuery,
  isOffset,
  ProjectParams,
  SessionParams,
} from "@pi-fleet/contracts";
import { type StreamRef, StreamSubscription } from "@pi-fleet/streams";
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { requireProject, requireSession } from "../lookups.ts";
import type { GatewayServices } from "../services.ts";
import { SseStream } from "../sse/sse-stream.ts";

/** Open SSE streams of this process, ended on shutdown. */
export const openStreams = new Set<SseStream>();

/** The client's resume cursor (header wins over query), validated. @throws ApiError 400 */
export function resumeCursor(request: FastifyRequest): string | undefined {
  const { after } = request.query as { after?: string };
  const header = request.headers["last-event-id"];
  const cursor = typeof header === "string" && header !== "" ? header : after;
  if (cursor !== undefined && !isOffset(cursor)) throw new ApiError("PF_ERR_STREAM_CURSOR_INVALID");
  return cursor;
}

async function serveSse(
  s: GatewayServices,
  request: FastifyRequest,
  reply: FastifyReply,
  ref: StreamRef,
  cursor: string | undefined,
): Promise<void> {
  let stream: SseStream | undefined;
  // 429 before anything is written when the credential has too many open streams.
  const release = s.connections.acquire(request.auth, () => stream?.end());
  reply.hijack();
  const res = reply.raw;
  stream = new SseStream(res, {
    heartbeatMs: s.env.PI_FLEET_SSE_HEARTBEAT_MS,
    retryMs: 1000,
    maxBufferedBytes: s.env.PI_FLEET_CLIENT_MAX_BUFFER_BYTES,
  });
  const subscription = new StreamSubscription(s.events, s.hub, ref, cursor, stream);
  openStreams.add(stream);
  s.state.sseClients++;
  stream.onFailed = (err) => request.log.warn({ err: (err as Error).message }, "stream replay failed");
  stream.onStreamFrame = () => s.metrics.frames.sse++;
  stream.onLagging = () => s.metrics.lagging.sse++;
  stream.onEnd = () => {
    release();
    if (stream) openStreams.delete(stream);
    s.state.sseClients--;
    void subscription.close();
  };
  // Subscribe first (so even a live-only client misses nothing written after its request), send
  // the head, then replay at the pace the client reads (the replay waits on the socket's drain).
  try {
    await subscription.open();
  } catch (err) {
    request.log.warn({ err: (err as Error).message }, "stream subscription failed");
    if (!res.headersSent) {
      res.writeHead(503, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "stream unavailable", code: "PF_ERR_SERVICE_UNAVAILABLE" }));
    }
    stream.end();
    return;
  }
  if (res.destroyed) {
    stream.end(); // the client left while subscribing: give back its slot and its subscription
    return;
  }
  res.writeHead(200, {
    ...(reply.getHeaders() as Record<string, string>),
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
  res.flushHeaders(); // the head goes out now, not with the first replayed frame
  stream.open(cursor === undefined ? subscription.offset : undefined);
  await subscription.catchUp();
  if ("session" in ref) {
    // Dialogs still waiting for an answer, re-sent after the replay as frames without an id (the
    // client's cursor stays on real offsets); a client may see one twice and dedupes by its id.
    for (const pending of await pendingUi(s, ref, request.log)) {
      if (res.writableEnded || res.destroyed) return;
      stream.frame(`data: ${JSON.stringify(pending)}\n\n`);
    }
  }
}

/** The session's pending extension UI requests; none when Redis fails (the stream still works). */
export async function pendingUi(
  s: GatewayServices,
  ref: { org: string; project: string; session: string },
  log: FastifyBaseLogger,
): Promise<unknown[]> {
  try {
    return await s.registry.pendingUiRequests(ref.org, ref.project, ref.session);
  } catch (err) {
    log.warn({ err: (err as Error).message }, "could not read pending extension UI requests");
    return [];
  }
}

export async function eventRoutes(app: FastifyInstance): Promise<void> {
  const s = app.services;
  app.get(
    "/v1/projects/:projectId/sessions/:id/events",
    {
      schema: {
        tags: ["sessions"],
        summary: "Server-Sent Events stream of the session's wire events (resumable).",
        params: SessionParams,
        querystring: EventsQuery,
        response: { 400: ErrorResponse, 404: ErrorResponse, 429: ErrorResponse },
      },
    },
    async (request, reply) => {
      const { projectId, id } = request.params as { projectId: string; id: string };
      const cursor = resumeCursor(request);
      await requireSession(s, request.auth.org, projectId, id);
      await serveSse(s, request, reply, { org: request.auth.org, project: projectId, session: id }, cursor);
    },
  );
  app.get(
    "/v1/projects/:projectId/events",
    {
      schema: {
        tags: ["projects"],
        summary:
          "Server-Sent Events stream of project activity: sessions created/deleted, runs queued/started/ended.",
        params: ProjectParams,
        querystring: EventsQuery,
        response: { 400: ErrorResponse, 404: ErrorResponse, 429: ErrorResponse },
      },
    },
    async (request, reply) => {
      const { projectId } = request.params as { projectId: string };
      const cursor = resumeCursor(request);
      await requireProject(s, request.auth.org, projectId);
      await serveSse(
        s,
        request,
        reply,
        { org: request.auth.org, project: projectId, activity: true },
        cursor,
      );
    },
  );
}
