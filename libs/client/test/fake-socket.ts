// Scripted in-memory WebSockets for the PiFleetSocket unit tests: the test plays the gateway's
// side (accept, frames, close) and reads what the client sent.
import {
  createPiFleetClient,
  type PiFleetSocket,
  type ReconnectInfo,
  type SocketOptions,
} from "../src/index.ts";

export type Frame = { kind: string; [key: string]: unknown };

/** A WebSocket stand-in the test drives from the server side. */
export class FakeSocket extends EventTarget {
  readyState = 0;
  readonly sent: Frame[] = [];
  readonly url: string;
  readonly headers: Record<string, string>;
  closedWith: number | undefined;

  constructor(url: string, headers: Record<string, string>) {
    super();
    this.url = url;
    this.headers = headers;
  }

  send(data: string): void {
    this.sent.push(JSON.parse(data) as Frame);
  }

  close(code = 1000): void {
    this.closedWith = code;
    this.readyState = 3;
  }

  /** Server side: accept the connection. */
  open(): void {
    this.readyState = 1;
    this.dispatchEvent(new Event("open"));
  }

  /** Server side: send a frame. */
  push(frame: Frame): void {
    this.dispatchEvent(new MessageEvent("message", { data: JSON.stringify(frame) }));
  }

  /** Server side: close the connection. */
  drop(code = 1001): void {
    this.readyState = 3;
    this.dispatchEvent(Object.assign(new Event("close"), { code }));
  }

  /** Opens and answers hello. */
  welcome(connectionId: string): void {
    this.open();
    this.push({ kind: "welcome", protocol: 1, connectionId });
  }

  /** The frames of `kind` sent so far. */
  frames(kind: string): Frame[] {
    return this.sent.filter((f) => f.kind === kind);
  }
}

/** Listener of the `ws` package's `unexpected-response` event (request, response). */
type UnexpectedResponse = (
  req: unknown,
  res: { statusCode: number; headers: Record<string, string>; on: EventTarget["addEventListener"] },
) => void;

/**
 * A stand-in for a socket of the `ws` package: also an EventEmitter-style `on`, and the
 * `unexpected-response` event a refused handshake emits (with the HTTP status and headers).
 */
export class FakeWsPackageSocket extends FakeSocket {
  private readonly unexpected: UnexpectedResponse[] = [];
  terminated = false;

  on(event: string, listener: UnexpectedResponse): this {
    if (event === "unexpected-response") this.unexpected.push(listener);
    return this;
  }

  terminate(): void {
    if (this.terminated) return;
    this.terminated = true;
    this.readyState = 3;
    queueMicrotask(() => {
      this.dispatchEvent(new Event("error"));
      this.dispatchEvent(Object.assign(new Event("close"), { code: 1006 }));
    });
  }

  /** Server side: answer the upgrade with an HTTP error (`body` as JSON). */
  refuse(status: number, headers: Record<string, string> = {}, body: unknown = {}): void {
    const emitter = new EventTarget();
    const res = {
      statusCode: status,
      headers,
      on: (event: string, listener: (arg?: unknown) => void) => {
        emitter.addEventListener(event, (e) => listener((e as CustomEvent).detail));
      },
      resume: () => {},
    };
    for (const listener of this.unexpected) listener({}, res as never);
    queueMicrotask(() => {
      emitter.dispatchEvent(new CustomEvent("data", { detail: Buffer.from(JSON.stringify(body)) }));
      emitter.dispatchEvent(new Event("end"));
    });
  }
}

/** A client socket whose connections are {@link FakeSocket}s (or `Socket`); fast backoff. */
export function harness(
  opts: Partial<SocketOptions> = {},
  Socket: new (url: string, headers: Record<string, string>) => FakeSocket = FakeSocket,
) {
  const sockets: FakeSocket[] = [];
  const reconnects: ReconnectInfo[] = [];
  const client = createPiFleetClient({
    baseUrl: "https://gw.test",
    apiKey: "key",
    webSocket: (url, headers) => {
      const s = new Socket(url, headers);
      sockets.push(s);
      return s as unknown as WebSocket;
    },
  });
  const socket: PiFleetSocket = client.ws({
    reconnect: { initialDelayMs: 1, maxDelayMs: 2 },
    onReconnect: (r) => reconnects.push(r),
    ...opts,
  });
  const next = async (n: number): Promise<FakeSocket> => {
    while (sockets.length < n) await new Promise((r) => setTimeout(r, 1));
    return sockets[n - 1]!;
  };
  return { sockets, reconnects, socket, next };
}

export const tick = () => new Promise((r) => setTimeout(r, 5));
