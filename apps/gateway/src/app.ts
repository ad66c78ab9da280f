/**
 * The gateway as a Fastify app, apart from the process entry so tests drive it with `inject` or a
 * real listener. Validation rejects unknown fields (`removeAdditional: false` plus
 * `additionalProperties: false` on every request schema); one error handler shapes every error.
 */

import type { Logger } from "@pi-fleet/observability";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import { installKeyUseAudit } from "./auth/audit.ts";
import { installAuth } from "./auth/authenticate.ts";
import { frameworkErrorHandler, installErrorHandlers } from "./error-handler.ts";
import { registerHttpPolicy } from "./http-policy.ts";
import { TOO_DEEP_MESSAGE, tooDeep } from "./json-depth.ts";
import { registerRateLimit } from "./limits/rate-limit.ts";
import { installMetrics } from "./metrics.ts";
import { registerOpenApi } from "./openapi.ts";
import { queueBoardRoutes } from "./queue-board.ts";
import { adminRoutes } from "./routes/admin.ts";
import { authRoutes } from "./routes/auth.ts";
import { controlRoutes } from "./routes/control.ts";
import { eventRoutes, openStreams } from "./routes/events.ts";
import { healthRoutes } from "./routes/health.ts";
import { projectRoutes } from "./routes/projects.ts";
import { providerRoutes } from "./routes/providers.ts";
import { openRpcSockets, rpcRoutes } from "./routes/rpc.ts";
import { runRoutes } from "./routes/runs.ts";
import { sessionRoutes } from "./routes/sessions.ts";
import { openSockets, wsRoutes } from "./routes/ws.ts";
import type { GatewayServices } from "./services.ts";
import { registerWebSockets } from "./ws/websocket-plugin.ts";

/** Builds the app around ready services. The caller listens and closes. */
export async function buildApp(services: GatewayServices, logger: Logger): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: services.env.PI_FLEET_MAX_BODY_BYTES,
    // Streams stay open for hours: no idle timeout on the socket; but a client must finish sending
    // its request in time (slow-loris), which does not limit how long a response may stream.
    connectionTimeout: 0,
    requestTimeout: services.env.PI_FLEET_REQUEST_TIMEOUT_MS,
    // Given to node:http at creation as well: set afterwards (as Fastify does with the option
    // above), Node never cut a request whose body stopped arriving. Checked every second, so a
    // slow request is answered 408 within PI_FLEET_REQUEST_TIMEOUT_MS + 1 s (headers too).
    http: { requestTimeout: services.env.PI_FLEET_REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 1000 },
    keepAliveTimeout: 10_000,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    logController: new LogController({ disableRequestLogging: true }),
    frameworkErrors: frameworkErrorHandler,
  });
  app.decorate("services", services);
  // JSON only: any other content type is a 415, never parsed. Bodies nested deeper than
  // MAX_JSON_DEPTH are a 400 (json-depth.ts).
  app.removeAllContentTypeParsers();
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, text, done) => {
    parseJson(request, text as string, (err, value) => {
      if (err) return done(err);
      if (tooDeep(value)) return done(Object.assign(new Error(TOO_DEEP_MESSAGE), { statusCode: 400 }));
      done(null, value);
    });
  });
  // Routes whose body is optional (seed: `POST …/sessions` has none) validate an absent body as `{}`.
  app.addHook("preValidation", async (request) => {
    if (request.body === undefined && request.routeOptions.config?.optionalBody) request.body = {};
  });
  installErrorHandlers(app);
  installAuth(app);
  installKeyUseAudit(app);
  await registerHttpPolicy(app);
  await registerRateLimit(app);
  installMetrics(app);
  app.addHook("onResponse", async (request, reply) => {
    request.log.debug(
      { method: request.method, url: request.routeOptions.url, status: reply.statusCode },
      "request",
    );
  });
  app.addHook("preClose", async () => {
    services.state.draining = true;
    for (const stream of [...openStreams]) stream.end();
    for (const socket of [...openSockets]) socket.close(1001, "gateway shutting down");
    for (const socket of [...openRpcSockets]) socket.close(1001, "gateway shutting down");
  });
  // After the hook above: the plugin's own preClose closes sockets without a code.
  await registerWebSockets(app);
  await registerOpenApi(app);
  await app.register(healthRoutes);
  await app.register(adminRoutes);
  await app.register(projectRoutes);
  await app.register(providerRoutes);
  await app.register(authRoutes);
  await app.register(sessionRoutes);
  await app.register(runRoutes);
  await app.register(controlRoutes);
  await app.register(eventRoutes);
  await app.register(wsRoutes);
  await app.register(rpcRoutes);
  await app.register(queueBoardRoutes);
  return app;
}
