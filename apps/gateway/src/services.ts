/**
 * What the routes use, built once per gateway process and decorated onto the Fastify instance.
 * Everything here is stateless with respect to clients except the hub's subscriptions.
 */
import type { Env } from "@pi-fleet/config";
import type { RunProducer } from "@pi-fleet/queue";
import type { Keys, Redis } from "@pi-fleet/redis";
import type { Registry } from "@pi-fleet/registry";
import type { WorkspacePaths } from "@pi-fleet/security";
import type { EventLog, SessionRecords, StreamHub } from "@pi-fleet/streams";
import type { ApiKeyStore, AuditLog, OrgStore } from "@pi-fleet/tenancy";
import type { LiveConnections } from "./auth/live-connections.ts";
import type { ControlClient } from "./control-client.ts";
import type { GatewayMetrics } from "./metrics.ts";

/** Tenancy stores (libs/tenancy). */
export interface Tenancy {
  orgs: OrgStore;
  keys: ApiKeyStore;
  audit: AuditLog;
}

/** The gateway's services. */
export interface GatewayServices {
  env: Env;
  keys: Keys;
  redis: Redis;
  registry: Registry;
  events: EventLog;
  /** Session creation and deletion with their activity events (one script each). */
  sessions: SessionRecords;
  hub: StreamHub;
  producer: RunProducer;
  control: ControlClient;
  paths: WorkspacePaths;
  /** Orgs, API keys and the audit log (keyed mode; open mode serves `default` without them). */
  tenancy: Tenancy;
  /** Open SSE/WS connections by credential: per-key cap, revocation of live streams. */
  connections: LiveConnections;
  /** Prometheus metrics of this gateway (metrics.ts). */
  metrics: GatewayMetrics;
  /** Set when shutdown began: readiness fails, streams end. */
  state: { draining: boolean; sseClients: number };
}

declare module "fastify" {
  interface FastifyInstance {
    services: GatewayServices;
  }
  interface FastifyContextConfig {
    /** The route accepts a request without a body (validated as `{}`). */
    optionalBody?: boolean;
  }
}
