/**
 * Request/response over the Node IPC channel between `bench/stream.ts` and its child scripts.
 * An API is a map `command → {req, res}`; the parent calls with `RpcClient.call`, the child
 * answers with `serve`. A child also exits when the channel closes (the bench died).
 */
import type { ChildProcess } from "node:child_process";

/** Commands of one child script. */
export type Api = Record<string, { req: unknown; res: unknown }>;

interface RequestMsg {
  id: number;
  cmd: string;
  req: unknown;
}

type ReplyMsg = { id: number; ok: true; res: unknown } | { id: number; ok: false; error: string };

function isReply(msg: unknown): msg is ReplyMsg {
  return typeof msg === "object" && msg !== null && "id" in msg && "ok" in msg;
}

function isRequest(msg: unknown): msg is RequestMsg {
  return typeof msg === "object" && msg !== null && "id" in msg && "cmd" in msg;
}

/** The parent's end of a child's IPC channel. */
export class RpcClient<A extends Api> {
  private readonly proc: ChildProcess;
  private readonly name: string;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(proc: ChildProcess, name: string) {
    this.proc = proc;
    this.name = name;
    proc.on("message", (msg: unknown) => {
      if (!isReply(msg)) return;
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.res);
      else p.reject(new Error(`${this.name}: ${msg.error}`));
    });
    proc.once("exit", () => {
      for (const p of this.pending.values()) p.reject(new Error(`${this.name} exited`));
      this.pending.clear();
    });
  }

  /** Sends `cmd` and resolves its answer; rejects on a child error, its exit or after `timeoutMs`. */
  call<K extends keyof A & string>(cmd: K, req: A[K]["req"], timeoutMs = 60_000): Promise<A[K]["res"]> {
    const id = this.nextId++;
    return new Promise<A[K]["res"]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: "${cmd}" got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as A[K]["res"]);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      const msg: RequestMsg = { id, cmd, req };
      this.proc.send(msg, (err) => {
        if (err) this.pending.get(id)?.reject(new Error(`${this.name}: send failed: ${err.message}`));
      });
    });
  }
}

/** Handlers of a child script, one per command. */
export type Handlers<A extends Api> = { [K in keyof A]: (req: A[K]["req"]) => Promise<A[K]["res"]> };

/** Answers the parent's calls with `handlers` (child side). Exits when the parent goes away. */
export function serve<A extends Api>(handlers: Handlers<A>): void {
  if (!process.send) {
    process.stderr.write("this script is a child of bench/stream.ts (it needs an IPC channel)\n");
    process.exit(2);
  }
  const send = (msg: ReplyMsg): void => {
    process.send?.(msg);
  };
  process.on("message", (msg: unknown) => {
    if (!isRequest(msg)) return;
    const handler = handlers[msg.cmd as keyof A];
    if (!handler) {
      send({ id: msg.id, ok: false, error: `unknown command ${msg.cmd}` });
      return;
    }
    handler(msg.req as A[keyof A]["req"]).then(
      (res) => send({ id: msg.id, ok: true, res }),
      (err: unknown) =>
        send({
          id: msg.id,
          ok: false,
          error: err instanceof Error ? (err.stack ?? err.message) : String(err),
        }),
    );
  });
  process.on("disconnect", () => process.exit(0));
}
