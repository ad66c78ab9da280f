/**
 * Ids that every log line written while a run executes must carry (`org`, `project`, `session`,
 * `runId`), whichever logger writes it: the run's own child logger, the session host, the
 * extension UI bridge, the event publisher, or a library warning logged through the worker's
 * logger. The ids live in an AsyncLocalStorage for the run's async call tree and a pino `mixin`
 * (installed by `createLogger`) adds them to each line, so no call site has to thread a child
 * logger through. Keys a logger already binds (a child with `org`, say) are not repeated: a
 * JSON line never carries a key twice (some log stores reject duplicate keys).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { Logger } from "pino";

/** Fields added to every log line of the current async context. */
export type LogFields = Readonly<Record<string, string | number>>;

const storage = new AsyncLocalStorage<LogFields>();

/** Runs `fn` with `fields` on every log line written inside its async call tree (nested: merged). */
export function withLogContext<T>(fields: LogFields, fn: () => T): T {
  const outer = storage.getStore();
  return storage.run(outer ? { ...outer, ...fields } : fields, fn);
}

/** The fields of the current async context, if any. */
export function currentLogContext(): LogFields | undefined {
  return storage.getStore();
}

/**
 * pino `mixin`: the context's fields minus those the logger already binds (the line's own merge
 * object wins over both, as pino merges the mixin under it).
 */
export function logContextMixin(_merge: object, _level: number, logger: Logger): object {
  const fields = storage.getStore();
  if (!fields) return {};
  const bound = logger.bindings();
  const out: Record<string, string | number> = {};
  for (const [key, value] of Object.entries(fields)) if (!(key in bound)) out[key] = value;
  return out;
}
