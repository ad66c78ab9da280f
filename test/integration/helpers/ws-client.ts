// A `/v1/ws` test client on Node's built-in WebSocket that records every frame it receives.

/** A frame of the `/v1/ws` protocol (API.md), as JSON. */
export type WsFrame = { kind: string; [key: string]: unknown };

/** An open `/v1/ws` socket, the frames received so far, and its close event. */
export interface WsTestClient {
  ws: WebSocket;
  frames: WsFrame[];
  closed: Promise<CloseEvent>;
  /** Sends one frame as JSON. */
  send(frame: WsFrame): void;
}

/**
 * Opens `/v1/ws` on the gateway at `url` (http://…) and resolves once the socket is open (no
 * hello sent). Rejects when the upgrade fails.
 */
export async function connectWs(url: string): Promise<WsTestClient> {
  const ws = new WebSocket(`${url.replace("http", "ws")}/v1/ws`);
  const frames: WsFrame[] = [];
  ws.addEventListener("message", (m) => frames.push(JSON.parse(String(m.data)) as WsFrame));
  const closed = new Promise<CloseEvent>((resolve) => ws.addEventListener("close", resolve));
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve());
    ws.addEventListener("error", () => reject(new Error("websocket failed")));
  });
  return { ws, frames, closed, send: (frame) => ws.send(JSON.stringify(frame)) };
}
