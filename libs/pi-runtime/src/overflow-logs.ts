// Where a session's bash overflow logs live. When a bash command's output is truncated, pi saves
// the whole output to `<os.tmpdir()>/pi-bash-<hex>.log` and names that path: in the bash tool's
// result text ("Full output: <path>]", the model is meant to read it) and in a user bash
// command's recorded `bashExecution` message (pi's core/tools/bash.js and core/bash-executor.js;
// pi has no option for the directory). Left there, the logs pile up in the worker's shared temp
// dir for ever, and a sandboxed agent cannot read them (its /tmp is the session's own dir).
// OverflowLogs takes each log as its command ends, before the model sees the path: in the
// sandbox it moves into the session's temp dir, which the sandbox mounts at /tmp and at the
// worker's os.tmpdir() (sandbox.ts), so the path pi named is the path the agent reads; on the
// host it stays where pi put it. Either way it is deleted with the session.
import { access, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { createBashToolDefinition } from "@earendil-works/pi-coding-agent";

/** pi's bash tool definition. */
type BashToolDefinition = ReturnType<typeof createBashToolDefinition>;

/** How long (ms) a log pi named may take to appear. */
const OPEN_WAIT_MS = 500;

/** pi's overflow log names (prefix `pi-bash`, 8 random bytes in hex). */
const LOG_NAME = /^pi-bash-[0-9a-f]+\.log$/;

/** The overflow logs of one session; see the module comment. */
export class OverflowLogs {
  readonly #tmpDir: string;
  readonly #sandboxed: boolean;
  /** Host paths to delete on dispose (host mode: the logs stay where pi wrote them). */
  readonly #left = new Set<string>();
  /** Adoptions under way (dispose waits for them: a rename must not race the dir's removal). */
  readonly #pending = new Set<Promise<void>>();
  /** dispose() ran: a log adopted later (a command the dispose killed) is deleted at once. */
  #disposed = false;

  /**
   * @param tmpDir the session's bash temp dir (absolute; removed with the session)
   * @param sandboxed true when commands run in bubblewrap with `tmpDir` as their /tmp
   */
  constructor(tmpDir: string, sandboxed: boolean) {
    this.#tmpDir = tmpDir;
    this.#sandboxed = sandboxed;
  }

  /**
   * Takes the log pi wrote at `path` (a result's `fullOutputPath`). Anything that is not a pi
   * overflow log directly in os.tmpdir() is ignored. Never throws: a log that cannot be moved
   * stays where it is, to be deleted on dispose. After dispose (a command that ended because
   * the session was disposed) the log is deleted at once.
   */
  async adopt(path: string | undefined): Promise<void> {
    if (path === undefined || dirname(path) !== tmpdir() || !LOG_NAME.test(basename(path))) return;
    const adoption = this.#adopt(path);
    this.#pending.add(adoption);
    try {
      await adoption;
    } finally {
      this.#pending.delete(adoption);
    }
  }

  async #adopt(path: string): Promise<void> {
    // pi's user bash command opens its log with createWriteStream and returns without waiting
    // for the open: the file may appear a moment after the result.
    for (let wait = 0; !(await exists(path)) && wait < OPEN_WAIT_MS; wait += 5) await sleep(5);
    if (this.#disposed) {
      await rm(path, { force: true }).catch(() => undefined);
      return;
    }
    if (this.#sandboxed) {
      // The session's temp dir is made in os.tmpdir() (open-session.ts): same file system, so
      // a rename (a log pi is still flushing keeps its open file).
      const moved = await rename(path, join(this.#tmpDir, basename(path))).then(
        () => true,
        () => false,
      );
      if (moved) return;
    }
    this.#left.add(path);
  }

  /**
   * The bash tool `bash` (pi's `createBashToolDefinition`), adopting the log of each call before
   * its result (or error) reaches pi. The log's path is read from pi's structured `details`
   * (`fullOutputPath`, of the result or of the call's progress updates), never from the text,
   * which the command's own output could forge to name another session's log.
   */
  wrapBashTool<T extends BashToolDefinition>(bash: T): T {
    return {
      ...bash,
      execute: async (toolCallId, params, signal, onUpdate, ctx) => {
        const named = new Set<string>();
        const note = (details: unknown) => {
          const path = (details as { fullOutputPath?: unknown } | undefined)?.fullOutputPath;
          if (typeof path === "string") named.add(path);
        };
        try {
          const result = await bash.execute(
            toolCallId,
            params,
            signal,
            (partial) => {
              note(partial.details);
              onUpdate?.(partial);
            },
            ctx,
          );
          note(result.details);
          return result;
        } finally {
          for (const path of named) await this.adopt(path);
        }
      },
    };
  }

  /**
   * Deletes the logs left on the host, once adoptions under way are done, and every log adopted
   * from now on. Call before removing the session's temp dir. Never throws.
   */
  async dispose(): Promise<void> {
    this.#disposed = true;
    await Promise.all(this.#pending);
    const left = [...this.#left];
    this.#left.clear();
    await Promise.all(left.map((path) => rm(path, { force: true }).catch(() => undefined)));
  }
}

function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
