/**
 * `GET …/sessions/{id}/events`: the session stream as SSE. Resume with `Last-Event-ID` or
 * `?after=<offset>` (`0` = all retained); neither means live only. The subscription registers
 * with the process hub before replaying, so nothing falls between replay and live.
 */
import { ApiError, ErrorResponse, EventsQuery, isOffset, SessionParams } from "@pi-fleet/contracts";
import { SessionSubscription } from "@pi-fleet/streams";
import type { FastifyInstance } from "fastify";
import { requireSession } from "../lookups.ts";
import { SseStream } from "../sse/sse-stream.ts";

/** Open SSE streams of this process, ended on shutdown. */
export const openStreams = new Set<SseStream>();

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
        response: { 400: ErrorResponse, 404: ErrorResponse },
      },
    },
    async (request, reply) => {
      const { projectId, id } = request.params as { projectId: string; id: string };
      const { after } = request.query as { after?: string };
      const header = request.headers["last-event-id"];
      const cursor = typeof header === "string" && header !== "" ? header : after;
      if (cursor !== undefined && !isOffset(cursor)) throw new ApiError("PF_ERR_STREAM_CURSOR_INVALID");
      await requireSession(s, projectId, id);

      // Subscribe (and replay) before the head goes out, so even a live-only client misses
      // nothing written after its request arrived; frames are held until the stream opens.
      reply.hijack();
      const res = reply.raw;
      const stream = new SseStream(res, {
        heartbeatMs: s.env.PI_FLEET_SSE_HEARTBEAT_MS,
        retryMs: 1000,
        maxBufferedBytes: s.env.PI_FLEET_CLIENT_MAX_BUFFER_BYTES,
      });
      const subscription = new SessionSubscription(
        s.events,
        s.hub,
        { org: s.org, project: projectId, session: id },
        cursor,
        stream,
      );
      openStreams.add(stream);
      s.state.sseClients++;
      stream.onEnd = () => {
        openStreams.delete(stream);
        s.state.sseClients--;
        void subscription.close();
      };
      try {
        await subscription.start();
      } catch (err) {
        request.log.warn({ err: (err as Error).message }, "stream subscription failed");
        stream.end();
        return;
      }
      if (res.destroyed) return;
      res.writeHead(200, {
        ...(reply.getHeaders() as Record<string, string>),
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache, no-transform",
        connection: "keep-alive",
        "x-accel-buffering": "no",
      });
      stream.open();
    },
  );
}
