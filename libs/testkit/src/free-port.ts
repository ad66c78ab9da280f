// Asks the OS for a currently free TCP port, for child processes (redis-server, gateways) that
// need a port number up front. Racy by nature: callers must retry if the port is taken meanwhile.

import { createServer } from "node:net";

/**
 * Resolves a TCP port that was free on `host` a moment ago (bind to port 0, read it, close).
 * Rejects with the listen error if `host` cannot be bound.
 */
export function findFreePort(host = "127.0.0.1"): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen({ port: 0, host, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close((err) =>
        err ? reject(err) : port > 0 ? resolve(port) : reject(new Error("no port assigned")),
      );
    });
  });
}
