/**
 * Bull Board, read-only, at `/v1/admin/queues/` (`PI_FLEET_QUEUE_BOARD`, on by default): the
 * dispatch queue, the maintenance queue and the per-project run queues. Job data holds prompts,
 * so only the operator sees it (auth/operator-access.ts: the operator token as Bearer, or as the
 * password of the browser's Basic prompt; open mode: anyone on loopback). Every queue is added
 * with `readOnlyMode: true`, and anything but GET/HEAD is refused before bull-board sees it.
 *
 * Projects come and go, so the project queues are found by a bounded SCAN of
 * `<prefix>:q:*:meta` (BullMQ's per-queue meta hash), at most every {@link REFRESH_MS} and only
 * when the board is used; at most {@link MAX_PROJECT_QUEUES} are listed.
 */
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { FastifyAdapter } from "@bull-board/fastify";
import { ERROR_CODES } from "@pi-fleet/contracts";
import { MAINTENANCE_QUEUE, queueOptions } from "@pi-fleet/queue";
import type { Redis } from "@pi-fleet/redis";
import { Queue } from "bullmq";
import type { FastifyInstance } from "fastify";
import { operatorOnly } from "./auth/operator-access.ts";

/** Where the board lives. */
export const QUEUE_BOARD_PATH = "/v1/admin/queues";
/** The queue list is refreshed at most this often (ms), on use. */
const REFRESH_MS = 5000;
/** Most project queues listed. */
const MAX_PROJECT_QUEUES = 200;
/** SCAN calls per refresh (× COUNT keys examined). */
const MAX_SCAN_CALLS = 100;
const SCAN_COUNT = 1000;

/** A glob pattern matching `text` literally. */
function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** Names of the project queues (`{org.project}`) present in Redis, bounded. */
export async function discoverProjectQueues(redis: Redis, queuePrefix: string): Promise<string[]> {
  const pattern = `${globEscape(queuePrefix)}:*:meta`;
  const found = new Set<string>();
  let cursor = "0";
  for (let calls = 0; calls < MAX_SCAN_CALLS; calls++) {
    const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", SCAN_COUNT);
    for (const key of keys) {
      const name = key.slice(queuePrefix.length + 1, -":meta".length);
      if (name.startsWith("{") && name.endsWith("}")) found.add(name);
      if (found.size >= MAX_PROJECT_QUEUES) return [...found].sort();
    }
    cursor = next;
    if (cursor === "0") break;
  }
  return [...found].sort();
}

/** Registers the board (no-op when `PI_FLEET_QUEUE_BOARD=false`). */
export async function queueBoardRoutes(app: FastifyInstance): Promise<void> {
  const s = app.services;
  if (!s.env.PI_FLEET_QUEUE_BOARD) return;
  const prefix = s.keys.queuePrefix;
  const queues = new Map<string, Queue>();
  const open = (name: string) => {
    let q = queues.get(name);
    if (!q) {
      // On the command connection: the board only reads, and fails fast while Redis is down.
      q = new Queue(name, { connection: s.redis, ...queueOptions(prefix) });
      queues.set(name, q);
    }
    return q;
  };
  const adapter = (q: Queue) => new BullMQAdapter(q, { readOnlyMode: true, allowRetries: false });
  const fixed = [s.keys.dispatchQueue, MAINTENANCE_QUEUE];
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(QUEUE_BOARD_PATH);
  // No queue (nor connection use) before the board is first requested: the list is filled then.
  const board = createBullBoard({
    queues: [],
    serverAdapter,
    options: { uiConfig: { boardTitle: "pi-fleet queues" } },
  });
  let refreshedAt = 0;
  let refreshing: Promise<void> | undefined;
  const refresh = async () => {
    const projects = await discoverProjectQueues(s.redis, prefix);
    const keep = new Set([...fixed, ...projects]);
    for (const [name, q] of queues) {
      if (!keep.has(name)) {
        queues.delete(name);
        await q.close().catch(() => undefined);
      }
    }
    board.replaceQueues([...fixed, ...projects].map((name) => adapter(open(name))));
    refreshedAt = Date.now();
  };

  await app.register(async (scope) => {
    // The `/v1` auth hook lets these through ("public"); operatorOnly below decides instead.
    scope.addHook("onRoute", (route) => {
      route.config = { ...(route.config as object), auth: "public" };
    });
    scope.addHook("onRequest", operatorOnly(s.env.PI_FLEET_ADMIN_TOKEN, "pi-fleet queues"));
    scope.addHook("onRequest", async (request, reply) => {
      if (request.method !== "GET" && request.method !== "HEAD") {
        return reply
          .status(ERROR_CODES.PF_ERR_AUTH_FORBIDDEN.status)
          .send({ error: "the queue board is read-only", code: "PF_ERR_AUTH_FORBIDDEN" });
      }
      if (request.routeOptions.url?.includes("/static/") || Date.now() - refreshedAt < REFRESH_MS) return;
      refreshing ??= refresh().finally(() => {
        refreshing = undefined;
      });
      await refreshing.catch((err: unknown) =>
        request.log.warn({ err: (err as Error).message }, "queue board: could not list project queues"),
      );
    });
    scope.addHook("onClose", async () => {
      await Promise.all([...queues.values()].map((q) => q.close().catch(() => undefined)));
    });
    await scope.register(serverAdapter.registerPlugin(), { prefix: QUEUE_BOARD_PATH });
  });
}
