/**
 * Metrics of a node:cluster process group (a gateway with `PI_FLEET_GATEWAY_PROCESSES` > 1): every
 * worker process keeps its own registry, and a scrape answered by any of them returns the sum over
 * all of them, so a scraper reaching a random process through the shared port still reads the
 * whole gateway. The arithmetic is prom-client's (`AggregatorRegistry.aggregate`: counters and
 * histograms summed, gauges per their `aggregator`, Node's process series as prom-client defines
 * them); collecting over IPC is ours, so that
 * - only processes that said they are ready are asked, each with its own short timeout, and one
 *   that does not answer in time counts with its previous answer (a scrape never waits for a
 *   process that is starting, stuck or dying);
 * - counters and histograms never go backwards when a process is replaced: the last answer of a
 *   process that exited is folded into a retired total that every later scrape adds (what it
 *   counted after its last answer is lost; its gauges are dropped).
 */
import type { Worker } from "node:cluster";
import cluster from "node:cluster";
import { AggregatorRegistry, type Registry } from "prom-client";
import { processMetrics, type Scrape } from "./metrics.ts";

/** A registry's `getMetricsAsJSON()` answer. */
type MetricsJson = Awaited<ReturnType<Registry["getMetricsAsJSON"]>>;

const SCRAPE_REQUEST = "pi-fleet:metrics-request";
const SCRAPE_REPLY = "pi-fleet:metrics-reply";
const COLLECT_REQUEST = "pi-fleet:metrics-collect";
const COLLECT_REPLY = "pi-fleet:metrics-collected";

interface Message {
  type: string;
  id: number;
}
interface ScrapeReply extends Message {
  body?: string;
  contentType?: string;
  error?: string;
}
interface CollectReply extends Message {
  metrics: MetricsJson;
}

function isMessage<T extends Message>(message: unknown, type: string): message is T {
  return (
    typeof message === "object" &&
    message !== null &&
    (message as { type?: unknown }).type === type &&
    typeof (message as { id?: unknown }).id === "number"
  );
}

const MONOTONIC = new Set(["counter", "histogram", "summary"]);
/** Retired answers kept apart before they are summed into one. */
const FOLD_AT = 8;

/**
 * Primary side: collects the processes' metrics and answers their scrape requests (see the module
 * comment). Create it once in the primary, before forking.
 */
export class ClusterMetrics {
  private readonly ready = new Set<Worker>();
  private readonly last = new Map<Worker, MetricsJson>();
  /** Last answers of exited processes (counters and histograms only), folded now and then. */
  private retired: MetricsJson[] = [];
  private readonly waiting = new Map<number, (metrics: MetricsJson) => void>();
  private next = 0;
  private readonly collectTimeoutMs: number;

  /** @param collectTimeoutMs how long a scrape waits for each process (ms) */
  constructor(collectTimeoutMs = 2000) {
    this.collectTimeoutMs = collectTimeoutMs;
    cluster.on("message", (worker, message: unknown) => {
      if (isMessage<CollectReply>(message, COLLECT_REPLY)) {
        this.waiting.get(message.id)?.(message.metrics);
      } else if (isMessage<Message>(message, SCRAPE_REQUEST)) {
        this.answer(worker, message.id);
      }
    });
  }

  /** Counts `worker` from now on (it reported ready: its metrics listener is installed). */
  add(worker: Worker): void {
    this.ready.add(worker);
  }

  /**
   * Keeps the last answer of a process that exited in the retired total (at once: a scrape right
   * after its exit must not miss it); past {@link FOLD_AT} answers they are summed into one.
   */
  async retire(worker: Worker): Promise<void> {
    this.ready.delete(worker);
    const last = this.last.get(worker);
    this.last.delete(worker);
    if (!last) return;
    this.retired.push(last.filter((m) => MONOTONIC.has(String(m.type))));
    if (this.retired.length < FOLD_AT) return;
    const parts = this.retired.slice();
    const folded = (await AggregatorRegistry.aggregate(parts).getMetricsAsJSON()) as MetricsJson;
    // Swapped in one step; answers retired during the await stay as they are.
    this.retired = [folded, ...this.retired.slice(parts.length)];
  }

  /** The exposition of every ready process plus the retired total. */
  async scrape(): Promise<Scrape> {
    const answers = await Promise.all([...this.ready].map((w) => this.collect(w)));
    const registry = AggregatorRegistry.aggregate([
      ...this.retired,
      ...answers.filter((a): a is MetricsJson => a !== undefined),
    ]);
    return { contentType: registry.contentType, body: await registry.metrics() };
  }

  private collect(worker: Worker): Promise<MetricsJson | undefined> {
    const id = this.next++;
    return new Promise((resolve) => {
      const done = (metrics: MetricsJson | undefined): void => {
        clearTimeout(timer);
        this.waiting.delete(id);
        if (metrics) this.last.set(worker, metrics);
        resolve(metrics ?? this.last.get(worker));
      };
      const timer = setTimeout(() => done(undefined), this.collectTimeoutMs);
      this.waiting.set(id, done);
      try {
        if (worker.isConnected()) worker.send({ type: COLLECT_REQUEST, id } satisfies Message);
        else done(undefined);
      } catch {
        done(undefined); // the channel closed meanwhile: it is exiting
      }
    });
  }

  private answer(worker: Worker, id: number): void {
    const reply = (r: Omit<ScrapeReply, "type" | "id">): void => {
      try {
        if (worker.isConnected()) worker.send({ type: SCRAPE_REPLY, id, ...r } satisfies ScrapeReply);
      } catch {
        // the asking process is exiting
      }
    };
    this.scrape().then(
      (s) => reply({ body: s.body, contentType: s.contentType }),
      (err: unknown) => reply({ error: err instanceof Error ? err.message : String(err) }),
    );
  }
}

/**
 * Worker side: answers the primary's collect requests with `registry` and this process's Node
 * metrics, and returns the scrape function of this process: it asks the primary for the whole
 * group's exposition.
 *
 * @param timeoutMs how long a scrape waits for the primary's answer (ms)
 * @returns `scrape()`, which rejects when the primary does not answer in time or reports an error
 */
export function clusterWorkerMetrics(registry: Registry, timeoutMs = 10_000): () => Promise<Scrape> {
  const pending = new Map<number, { resolve: (s: Scrape) => void; reject: (e: Error) => void }>();
  let next = 0;
  const send = (message: Message | CollectReply): boolean => {
    if (!process.send || !process.connected) return false;
    process.send(message);
    return true;
  };
  process.on("message", (message: unknown) => {
    if (isMessage<Message>(message, COLLECT_REQUEST)) {
      Promise.all([registry.getMetricsAsJSON(), processMetrics().getMetricsAsJSON()]).then(
        ([own, proc]) =>
          send({ type: COLLECT_REPLY, id: message.id, metrics: [...own, ...proc] as MetricsJson }),
        () => undefined, // no answer: the primary uses this process's previous one
      );
      return;
    }
    if (!isMessage<ScrapeReply>(message, SCRAPE_REPLY)) return;
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
      if (!send({ type: SCRAPE_REQUEST, id })) {
        pending.get(id)?.reject(new Error("cluster metrics: no IPC channel to the primary"));
        pending.delete(id);
      }
    });
}
