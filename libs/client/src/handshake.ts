/**
 * Why a WebSocket handshake failed. The WebSocket API shows a refused upgrade (HTTP 401, 403,
 * 429 …) as a plain close (1006) with no status, so the socket learns it another way:
 * - a socket of the [`ws`](https://github.com/websockets/ws) package (returned by a custom
 *   factory) emits `unexpected-response` with the HTTP answer: {@link watchRefusal};
 * - with the default factory (the global `WebSocket`), a plain `GET` of the same URL with the same
 *   headers asks the gateway, whose authentication and rate limits answer it as they answered the
 *   upgrade: {@link probeRefusal}.
 *
 * Only the gateway's own 401/403 ({@link isFinalRefusal}: its `{error, code: "PF_ERR_…"}` body) is
 * final: a proxy or load balancer in front of it may answer 401/403 for its own reasons (a plain
 * `GET` it does not route, a transient policy), which says nothing about the API key.
 */
import { retryAfterMs } from "./resume.ts";

/** An HTTP answer that refused (or would refuse) a handshake. */
export interface Refusal {
  /** The HTTP status. */
  status: number;
  /** What its `Retry-After` header names (ms), 0 without one. */
  retryAfterMs: number;
  /** The parsed body (the gateway's `{error, code}`), or its text, or undefined. */
  body: unknown;
}

/** How long a probe or the read of a refusal's body may take (ms). */
const PROBE_TIMEOUT_MS = 5000;
/** Bytes of a refusal's body read at most. */
const MAX_BODY_BYTES = 8192;

interface WsPackageResponse {
  statusCode?: number;
  headers?: Record<string, string | string[] | undefined>;
  on(event: string, listener: (chunk?: unknown) => void): unknown;
  resume?(): unknown;
}

interface WsPackageSocket {
  on(event: "unexpected-response", listener: (req: unknown, res: WsPackageResponse) => void): unknown;
  terminate?(): void;
  close(): void;
}

/**
 * True when `refusal` is the gateway's final refusal of the credentials: status 401 or 403 with
 * the gateway's error body, a JSON object whose `code` is a string starting with `PF_ERR_` (e.g.
 * `PF_ERR_AUTH_INVALID`, `PF_ERR_AUTH_FORBIDDEN`). Any other answer (no body, HTML, a proxy's JSON)
 * is not: the socket backs off and tries again.
 */
export function isFinalRefusal(refusal: Refusal | undefined): boolean {
  if (refusal === undefined || (refusal.status !== 401 && refusal.status !== 403)) return false;
  const body = refusal.body;
  if (typeof body !== "object" || body === null || Array.isArray(body)) return false;
  const code = (body as { code?: unknown }).code;
  return typeof code === "string" && code.startsWith("PF_ERR_");
}

function parseBody(text: string): unknown {
  if (text === "") return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/**
 * When `ws` is a socket of the `ws` package (it has `on`), listens for `unexpected-response`:
 * reads the answer (status, `Retry-After`, up to 8 KiB of body, at most 5 s), calls `onRefusal`
 * with it, then ends the handshake (ws then emits `error` and `close` 1006). Returns whether it
 * could listen (false for the WebSocket API of Node's global or a browser's).
 */
export function watchRefusal(ws: WebSocket, onRefusal: (refusal: Refusal) => void): boolean {
  const candidate = ws as unknown as Partial<WsPackageSocket>;
  if (typeof candidate.on !== "function") return false;
  const socket = candidate as WsPackageSocket;
  socket.on("unexpected-response", (_req, res) => {
    const raw = res.headers?.["retry-after"];
    const header = Array.isArray(raw) ? raw[0] : raw;
    const chunks: Uint8Array[] = [];
    let size = 0;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const bytes = new Uint8Array(size);
      let at = 0;
      for (const chunk of chunks) {
        bytes.set(chunk, at);
        at += chunk.byteLength;
      }
      const text = new TextDecoder().decode(bytes).slice(0, MAX_BODY_BYTES);
      onRefusal({
        status: res.statusCode ?? 0,
        retryAfterMs: retryAfterMs(header ?? null),
        body: parseBody(text),
      });
      // With a listener for this event, ws leaves ending the handshake to it.
      if (typeof socket.terminate === "function") socket.terminate();
      else socket.close();
    };
    const timer = setTimeout(finish, PROBE_TIMEOUT_MS);
    res.on("data", (chunk) => {
      if (!(chunk instanceof Uint8Array) || size >= MAX_BODY_BYTES) return;
      chunks.push(chunk);
      size += chunk.byteLength;
    });
    res.on("end", finish);
    res.on("error", finish);
    res.on("close", finish);
  });
  return true;
}

/**
 * Asks the gateway with a plain `GET` of the socket's `url` (`ws(s):` → `http(s):`) and `headers`
 * what it answers a request with these credentials: 401/403 (key unknown or revoked, not allowed),
 * 429 (a request rate limit) — or 404, the answer of a socket route to a request that is not an
 * upgrade, when the credentials are fine. Something in front of the gateway may answer instead
 * (see {@link isFinalRefusal}). Resolves the answer, or undefined when nothing answered within
 * 5 s. Never rejects.
 */
export async function probeRefusal(
  url: string,
  headers: Record<string, string>,
  fetchFn: typeof globalThis.fetch,
): Promise<Refusal | undefined> {
  try {
    const res = await fetchFn(url.replace(/^ws/i, "http"), {
      headers,
      signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
    });
    const text = await res.text().catch(() => "");
    return {
      status: res.status,
      retryAfterMs: retryAfterMs(res.headers.get("retry-after")),
      body: parseBody(text.slice(0, MAX_BODY_BYTES)),
    };
  } catch {
    return undefined;
  }
}
