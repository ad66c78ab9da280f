/**
 * The bench's HTTP client: plain `node:http` with a keep-alive agent (less client-side overhead
 * than `fetch`, so round trips measure the server more than the client), JSON in and out.
 */
import { Agent, request } from "node:http";
import { nowNs } from "./util.ts";

const agent = new Agent({ keepAlive: true, maxSockets: 256, keepAliveMsecs: 10_000 });

/** An answer: status, body text, and the monotonic ns at which the body had fully arrived. */
export interface HttpAnswer {
  status: number;
  text: string;
  atNs: bigint;
}

/** Sends one request; rejects on network errors or after `timeoutMs`. */
export function send(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 30_000,
): Promise<HttpAnswer> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      `${base}${path}`,
      {
        method,
        agent,
        headers:
          payload === undefined
            ? {}
            : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            text: Buffer.concat(chunks).toString("utf8"),
            atNs: nowNs(),
          }),
        );
        res.on("error", reject);
      },
    );
    req.setTimeout(timeoutMs, () =>
      req.destroy(new Error(`${method} ${path} timed out after ${timeoutMs} ms`)),
    );
    req.on("error", reject);
    req.end(payload);
  });
}

/** Sends a request and parses a 2xx JSON answer; throws with the body otherwise. */
export async function api<T>(base: string, method: string, path: string, body?: unknown): Promise<T> {
  const answer = await send(base, method, path, body);
  if (answer.status < 200 || answer.status > 299) {
    throw new Error(`${method} ${path} → HTTP ${answer.status}: ${answer.text}`);
  }
  return JSON.parse(answer.text) as T;
}

/** Drops idle keep-alive sockets (at the end of the bench). */
export function closeHttp(): void {
  agent.destroy();
}
