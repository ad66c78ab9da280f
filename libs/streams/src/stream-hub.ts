/**
 * The gateway's one live tail: a single pub/sub connection per process shared by every client
 * (never one blocking connection per subscriber, queues-and-streams.md §5). Writers publish
 * "<epoch>\n<prevId>\n<id>\n<json>" in the same Lua call as the XADD, so the stream stays the source of
 * truth: pub/sub is at most once, and subscribers repair gaps from the stream (see
 * StreamSubscription). A deletion publishes {@link STREAM_END_PREFIX} + the final `stream_ended`
 * event JSON on the channels of the streams it ends. Channels are subscribed on first watcher and
 * dropped on the last.
 */
import type { Redis } from "@pi-fleet/redis";

/**
 * Starts an announcement that a stream ended for good (its session or project was deleted), then
 * the final event's JSON. Stream epochs are hex, so no entry announcement starts like this.
 */
export const STREAM_END_PREFIX = "!end\n";

/** Why a stream ended for good. */
export type StreamEndReason = "session_deleted" | "project_deleted";

/** The final `stream_ended` event's JSON (contracts: StreamEndedEvent). */
export function streamEndedJson(reason: StreamEndReason): string {
  return JSON.stringify({ type: "stream_ended", reason });
}

/** Receives a channel's announcements. */
export interface HubListener {
  /** A new entry `id` whose predecessor in the stream is `prev`, in stream epoch `epoch`. Must not throw. */
  onEntry(epoch: string, prev: string, id: string, data: string): void;
  /** The stream ended for good; `data` is the final `stream_ended` event JSON. Must not throw. */
  onEnd(data: string): void;
  /** The hub's connection was re-established: announcements may have been lost. */
  onResync(): void;
}

/** One pub/sub connection fanned out in memory to any number of listeners. */
export class StreamHub {
  private readonly sub: Redis;
  private readonly listeners = new Map<string, Set<HubListener>>();
  private readyOnce = false;
  /** While listeners are told of a reconnect: the probes they share, by channel (see {@link shared}). */
  private probes: Map<string, Promise<unknown>> | undefined;

  /** @param subscriber a dedicated connection (role `subscriber`); the hub owns it. */
  constructor(subscriber: Redis) {
    this.sub = subscriber;
    this.sub.on("message", (channel: string, message: string) => this.dispatch(channel, message));
    this.sub.on("ready", () => {
      if (this.readyOnce) {
        this.probes = new Map();
        try {
          for (const set of this.listeners.values()) for (const l of set) l.onResync();
        } finally {
          this.probes = undefined;
        }
      }
      this.readyOnce = true;
    });
    if (this.sub.status === "ready") this.readyOnce = true;
  }

  /** Number of channels currently subscribed. */
  get channelCount(): number {
    return this.listeners.size;
  }

  /** Number of listeners across channels. */
  get listenerCount(): number {
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    return n;
  }

  /**
   * Starts delivering `channel` to `listener`; resolves once Redis confirmed the subscription,
   * so every entry written afterwards is announced. Returns the function that stops it.
   */
  async watch(channel: string, listener: HubListener): Promise<() => Promise<void>> {
    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
    }
    set.add(listener);
    await this.sub.subscribe(channel);
    return async () => {
      const current = this.listeners.get(channel);
      if (!current) return;
      current.delete(listener);
      if (current.size === 0) {
        this.listeners.delete(channel);
        await this.sub.unsubscribe(channel).catch(() => {});
      }
    };
  }

  /**
   * Runs `probe` for a listener of `channel`. Called from within `onResync` (synchronously), the
   * listeners of one channel share one call and its promise: after a reconnect every subscriber of
   * a stream asks the same questions (its bounds, its record), so 10,000 subscribers on 100
   * streams cost 100 probes, not 10,000. Called at any other time, it just runs `probe`.
   */
  shared<T>(channel: string, probe: () => Promise<T>): Promise<T> {
    const probes = this.probes;
    if (!probes) return probe();
    let pending = probes.get(channel) as Promise<T> | undefined;
    if (!pending) {
      pending = probe();
      probes.set(channel, pending);
    }
    return pending;
  }

  /** Drops every listener and closes the connection. */
  async close(): Promise<void> {
    this.listeners.clear();
    await this.sub.quit().catch(() => this.sub.disconnect());
  }

  private dispatch(channel: string, message: string): void {
    const set = this.listeners.get(channel);
    if (!set) return;
    if (message.startsWith(STREAM_END_PREFIX)) {
      const data = message.slice(STREAM_END_PREFIX.length);
      for (const listener of [...set]) listener.onEnd(data);
      return;
    }
    const a = message.indexOf("\n");
    const b = message.indexOf("\n", a + 1);
    const c = message.indexOf("\n", b + 1);
    if (a < 0 || b < 0 || c < 0) return;
    const epoch = message.slice(0, a);
    const prev = message.slice(a + 1, b);
    const id = message.slice(b + 1, c);
    const data = message.slice(c + 1);
    for (const listener of set) listener.onEntry(epoch, prev, id, data);
  }
}
