// Counts the pi sessions the worker opens and disposes (in-process stacks): SessionHost.open is
// wrapped so every session it returns counts once, and its dispose once.
import { SessionHost } from "../../../apps/worker/src/session-host.ts";

type Open = (...args: unknown[]) => Promise<{ dispose(): Promise<void> }>;

/** Live counts of opened and disposed pi sessions, until `restore()`. */
export interface PiSessionCount {
  readonly opened: number;
  readonly disposed: number;
  /** Puts SessionHost.open back. */
  restore(): void;
}

/** Starts counting the pi sessions every SessionHost of this process opens and disposes. */
export function countPiSessions(): PiSessionCount {
  const proto = SessionHost.prototype as unknown as { open: Open };
  const open = proto.open;
  const count = {
    opened: 0,
    disposed: 0,
    restore: () => {
      proto.open = open;
    },
  };
  proto.open = async function (this: SessionHost, ...args: unknown[]) {
    const session = await open.apply(this, args);
    count.opened++;
    const dispose = session.dispose.bind(session);
    session.dispose = () => {
      count.disposed++;
      return dispose();
    };
    return session;
  };
  return count;
}
