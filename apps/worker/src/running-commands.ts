/**
 * The session commands running on one project's owner (ProjectRunner.command): how many, and for
 * which sessions, so idle release and session eviction leave them alone; and a way to stop them
 * all when an operator disables the org (disabled-org-watch.ts). A command counts from the moment
 * it arrives, before its session is open; one stopped while its session was still opening is
 * stopped as soon as the session is there.
 */
import type { PiSession } from "@pi-fleet/pi-runtime";

/** One command in flight; `attach` once its session is open, `end` when it answered. */
export interface RunningCommand {
  /** Records the session the command runs on (stops it at once if abortAll came first). */
  attach(session: PiSession): void;
  /** The command answered (or failed): it no longer counts. Idempotent. */
  end(): void;
}

interface Entry {
  readonly sessionId: string;
  session?: PiSession;
  aborted: boolean;
}

/** The commands in flight on one project runner. */
export class RunningCommands {
  private readonly entries = new Set<Entry>();
  /** Monotonic ms (performance.now()) when a command last started or ended; 0 before the first. */
  private last = 0;

  /** Commands in flight now. */
  get size(): number {
    return this.entries.size;
  }

  /** Monotonic ms when a command last started or ended (0: none yet); idle release counts it as activity. */
  get lastAt(): number {
    return this.last;
  }

  /** Whether a command of `sessionId` is in flight. */
  has(sessionId: string): boolean {
    for (const e of this.entries) if (e.sessionId === sessionId) return true;
    return false;
  }

  /** Counts a command of `sessionId` from now until its `end()`. */
  begin(sessionId: string): RunningCommand {
    const entry: Entry = { sessionId, aborted: false };
    this.entries.add(entry);
    this.last = performance.now();
    return {
      attach: (session) => {
        entry.session = session;
        if (entry.aborted) session.abortCommands();
      },
      end: () => {
        if (this.entries.delete(entry)) this.last = performance.now();
      },
    };
  }

  /**
   * Stops every command in flight now, without waiting for them (PiSession.abortCommands: user
   * bash and compact end with pi's cancelled answer; other commands are short and finish). A
   * command whose session is still opening is stopped as it attaches. Commands that start later
   * are not affected. Never throws.
   * @returns how many commands were in flight and not stopped before
   */
  abortAll(): number {
    let stopped = 0;
    const sessions = new Set<PiSession>();
    for (const e of this.entries) {
      if (!e.aborted) stopped++;
      e.aborted = true;
      if (e.session) sessions.add(e.session);
    }
    for (const session of sessions) session.abortCommands();
    return stopped;
  }
}
