// Checks that a Redis server answers, over a raw socket, so the testkit needs no Redis client
// library just to wait for a spawned redis-server to come up.

import { connect } from "node:net";

/**
 * Sends an inline `PING` to `host:port` and resolves true on `+PONG`, false on any other reply,
 * connection error or after `timeoutMs` (default 1000). Never rejects.
 */
export function pingRedis(port: number, host = "127.0.0.1", timeoutMs = 1000): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    let buf = "";
    let done = false;
    const socket = connect({ port, host });
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk: string) => {
      buf += chunk;
      if (buf.includes("\r\n")) finish(buf.startsWith("+PONG"));
    });
    socket.on("error", () => finish(false));
    socket.on("close", () => finish(false));
  });
}

/**
 * Polls {@link pingRedis} every 50 ms until it answers. Resolves when it does; rejects with an
 * Error after `timeoutMs` (default 10000) or as soon as `shouldAbort()` returns a reason string.
 */
export async function waitForRedisPing(
  port: number,
  opts: { host?: string; timeoutMs?: number; shouldAbort?: () => string | undefined } = {},
): Promise<void> {
  const host = opts.host ?? "127.0.0.1";
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  for (;;) {
    const reason = opts.shouldAbort?.();
    if (reason !== undefined) throw new Error(reason);
    if (await pingRedis(port, host, 500)) return;
    if (Date.now() > deadline) throw new Error(`redis at ${host}:${port} did not answer PING in time`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
