/**
 * Metrics of a node:cluster process group (a gateway with `PI_FLEET_GATEWAY_PROCESSES` > 1): every
 * worker process keeps its own registry, and a scrape answered by any of them returns the sum over
 * all of them, so a scraper reaching a random process through the shared port still reads whole
 * counters. The aggregation is prom-client's `AggregatorRegistry` (counters and histograms summed,
 * gauges per their `aggregator`, Node's process metrics as prom-client defines them); only the
 * request from a worker to the primary is ours: one IPC message each way.
 */
import cluster from "node:cluster";
import { AggregatorRegistry, type Registry } from "prom-client";
import { processMetrics, type Scrape } from "./metrics.ts";

const REQUEST = "pi-fleet:metrics-request";
const REPLY = "pi-fleet:metrics-reply";

interface ScrapeRequest {
  type: typeof REQUEST;
  id: number;
}

interface ScrapeReply {
  type: typeof REPLY;
  id: number;
  body?: string;
  contentType?: string;
  error?: string;
}

function isMessage<T extends { type: string }>(message: unknown, type: T["type"]): message is T {
  return typeof message === "object" && message !== null && (message as { type?: unknown }).type === type;
}

/**
 * Primary side: answers the workers' scrape requests with the aggregated exposition of every
 * connected worker (prom-client gives up after 5 s when a worker does not answer; the request then
 * gets an error). Call once, before forking.
 */
export function serveClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on("message", (worker, message: unknown) => {
    if (!isMessage<ScrapeRequest>(message, REQUEST)) return;
    const reply = (r: Omit<ScrapeReply, "type" | "id">): void => {
      if (worker.isConnected()) worker.send({ type: REPLY, id: message.id, ...r } satisfies ScrapeReply);
    };
    aggregator.clusterMetrics().then(
      (body) => reply({ body, contentType: aggregator.contentType }),
      (err: unknown) => reply({ error: err instanceof Error ? err.message : String(err) }),
    );
  });
}

/**
 * Worker side: the scrapes of a cluster worker. Registers `registry` and this process's Node
 * metrics with prom-client's worker listener (the primary's aggregation reads them) and returns a
 * scrape function that asks the primary for the whole group's exposition.
 *
 * @param timeoutMs how long a scrape waits for the primary's answer
 * @returns `scrape()`, which rejects when the primary does not answer in time or reports an error
 */
export function clusterWorkerMetrics(registry: Registry, timeoutMs = 10_000): () => Promise<Scrape> {
  AggregatorRegistry.setRegistries([registry, processMetrics()]);
  new AggregatorRegistry(); // installs prom-client's worker-side listener (idempotent)
  const pending = new Map<number, { resolve: (s: Scrape) => void; reject: (e: Error) => void }>();
  let next = 0;
  process.on("message", (message: unknown) => {
    if (!isMessage<ScrapeReply>(message, REPLY)) return;
    const waiter = pending.get(message.id);
    if (!waiter) return;
    pending.delete(message.id);
    if (message.body !== undefined && message.contentType !== undefined) {
      waiter.resolve({ body: message.body, contentType: message.contentType });
    } else {
      waiter.reject(new Error(`cluster metrics: ${message.error ?? "no answer body"}`));
    }
  });
  return () =>
    new Promise<Scrape>((resolve, reject) => {
      const id = next++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`cluster metrics: the primary did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(id, {
        resolve: (s) => {
          clearTimeout(timer);
          resolve(s);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      if (!process.send) {
        pending.delete(id);
        clearTimeout(timer);
        reject(new Error("cluster metrics: this process has no IPC channel (not a cluster worker)"));
        return;
      }
      process.send({ type: REQUEST, id } satisfies ScrapeRequest);
    });
}
