/**
 * Where delivery is queued, from the kernel's socket table (`/proc/net/tcp`, loopback IPv4):
 * bytes the gateway has not read yet from its hub (pub/sub) connection, and bytes the clients
 * have not read yet from their SSE sockets. A standing queue at the hub socket means the gateway
 * is behind; at the client sockets, the client processes are. (Bytes still in the gateway's own
 * write buffers are not visible here: they show as RSS.)
 */
import { readFileSync } from "node:fs";

export interface QueueSample {
  /** Unread bytes in the gateway's receive queue of its hub connection, the largest over its processes (undefined: not found). */
  hubUnread: number | undefined;
  /** Sum of unread bytes in the client ends of the SSE sockets, and how many hold any. */
  clientsUnread: number;
  clientsBacklogged: number;
  /** Sum of the gateway ends' send queues (bytes not yet taken by the client ends). */
  gatewayUnsent: number;
}

const port = (addr: string | undefined): number => Number.parseInt(addr?.split(":")[1] ?? "", 16);

/**
 * Samples the socket queues of the SSE connections to `gatewayPort` and of the gateway's hub
 * connections (their local ports `hubPorts`, one per gateway process, to Redis on `redisPort`;
 * `hubUnread` is the largest of them). Undefined when unreadable.
 */
export function sampleQueues(
  gatewayPort: number,
  hubPorts: readonly number[],
  redisPort: number,
): QueueSample | undefined {
  let text: string;
  try {
    text = readFileSync("/proc/net/tcp", "utf8");
  } catch {
    return undefined;
  }
  const sample: QueueSample = {
    hubUnread: undefined,
    clientsUnread: 0,
    clientsBacklogged: 0,
    gatewayUnsent: 0,
  };
  const lines = text.split("\n");
  for (let i = 1; i < lines.length; i++) {
    const f = (lines[i] ?? "").trim().split(/\s+/);
    if (f.length < 5 || f[3] !== "01") continue; // ESTABLISHED only
    const local = port(f[1]);
    const remote = port(f[2]);
    const [tx, rx] = (f[4] ?? "0:0").split(":").map((h) => Number.parseInt(h, 16));
    if (remote === gatewayPort) {
      sample.clientsUnread += rx ?? 0;
      if ((rx ?? 0) > 0) sample.clientsBacklogged++;
    } else if (local === gatewayPort) {
      sample.gatewayUnsent += tx ?? 0;
    } else if (remote === redisPort && hubPorts.includes(local)) {
      sample.hubUnread = Math.max(sample.hubUnread ?? 0, rx ?? 0);
    }
  }
  return sample;
}

/** Average of several samples (fields missing in any sample stay undefined). */
export function averageQueues(samples: QueueSample[]): QueueSample | undefined {
  if (samples.length === 0) return undefined;
  const avg = (get: (s: QueueSample) => number | undefined): number | undefined => {
    let sum = 0;
    for (const s of samples) {
      const v = get(s);
      if (v === undefined) return undefined;
      sum += v;
    }
    return sum / samples.length;
  };
  return {
    hubUnread: avg((s) => s.hubUnread),
    clientsUnread: avg((s) => s.clientsUnread) ?? 0,
    clientsBacklogged: avg((s) => s.clientsBacklogged) ?? 0,
    gatewayUnsent: avg((s) => s.gatewayUnsent) ?? 0,
  };
}
