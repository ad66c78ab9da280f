// Polling helper for tests: wait until some eventually-true condition holds (Redis state, a
// counter, an assertion) instead of sleeping for a guessed amount of time.

/** Options for {@link waitFor}: total `timeoutMs` (default 5000), poll `intervalMs` (default 25). */
export interface WaitForOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Describes what was awaited; included in the timeout error. */
  message?: string;
}

/**
 * Calls `fn` every `intervalMs` until it returns (or resolves to) a truthy value and resolves
 * with that value. A throw/rejection from `fn` counts as "not yet" (so `expect` calls can be
 * polled). Rejects after `timeoutMs` with an Error naming `message`, whose `cause` is the last
 * error thrown by `fn`, if any. For tests only.
 */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  opts: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const intervalMs = opts.intervalMs ?? 25;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const what = opts.message ? `: ${opts.message}` : "";
      const last = lastError instanceof Error ? ` (last error: ${lastError.message})` : "";
      throw new Error(`waitFor timed out after ${timeoutMs}ms${what}${last}`, { cause: lastError });
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
