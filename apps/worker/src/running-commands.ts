/**
 * The session commands running on one project's owner (ProjectRunner.command): how many, and for
 * which sessions, so idle release and session eviction leave them alone; and a way to stop them
 * all when an operator disables the org (disabled-org-watch.ts). A command counts from the moment
 * it arrives, before its session is open; one stopped while its session was still opening is not
 * started at all (its caller checks `stopped` before handing it to pi).
 */
import type { PiSession } from "@pi-fleet/pi-runtime";

/** Command types pi can stop while they run (PiSession.abortCommands); the others are short. */
const STOPPABLE: ReadonlySet<string> = new Set(["bash", "compact"]);

/** One command in flight; `attach` once pi runs it, `end` when it answered. */
export interface RunningCommand {
  /** abortAll() came before the command was attached: do not start it. */
  readonly stopped: boolean;
  /** Records the session pi runs the command on (a later abortAll() stops it there). */
  attach(session: PiSession): void;
  /** The command answered (or failed): it no longer counts. Idempotent. */
  end(): void;
}

interface Entry {
  readonly sessionId: string;
  readonly type: string;
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

  /** Counts a command (`type`, e.g. `bash`) of `sessionId` from now until its `end()`. */
  begin(sessionId: string, type: string): RunningCommand {
    const entry: Entry = { sessionId, type, aborted: false };
    this.entries.add(entry);
    this.last = performance.now();
    return {
      get stopped() {
        return entry.aborted && entry.session === undefined;
      },
      attach: (session) => {
        entry.session = session;
      },
      end: () => {
        if (this.entries.delete(entry)) this.last = performance.now();
      },
    };
  }

  /**
   * Stops every command in flight now, without waiting for them: those pi runs through
   * PiSession.abortCommands (user bash and compact end with pi's cancelled answer; other commands
   * are short and finish); those whose session is still opening are not started (`stopped`).
   * Commands that begin later are not affected. Never throws.
   * @returns how many commands this stopped: running bash / compact, and any not started yet
   */
  abortAll(): number {
    let stopped = 0;
    const sessions = new Set<PiSession>();
    for (const e of this.entries) {
      if (!e.aborted && (e.session === undefined || STOPPABLE.has(e.type))) stopped++;
      e.aborted = true;
      if (e.session) sessions.add(e.session);
    }
    for (const session of sessions) session.abortCommands();
    return stopped;
  }
}
