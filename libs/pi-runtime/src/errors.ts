// The one error type this package throws on purpose, so callers can map failures to API codes
// by `code` instead of parsing pi's message texts.

/**
 * Why a pi-runtime operation was refused:
 * - `no_model`: the org runtime has no model with configured auth (openSession without a model).
 * - `unknown_model`: the provider/model pair is not in the org runtime.
 * - `busy`: the session is running a prompt; the operation needs an idle session.
 * - `idle`: the session is not running a prompt; the operation (steer, follow-up) needs an
 *   active run.
 * - `corrupt_session`: the session file exists but is not a valid pi session (bad header);
 *   the file is left untouched.
 * - `auth`: the model's provider has no credential in this org runtime.
 * - `invalid_provider`: an org's provider configuration was refused (a built-in provider id,
 *   a bad id or URL, a duplicate, or a model definition pi rejects).
 */
export type PiRuntimeErrorCode =
  | "no_model"
  | "unknown_model"
  | "busy"
  | "idle"
  | "corrupt_session"
  | "auth"
  | "invalid_provider";

/** An expected, classified failure of the pi runtime adapter (see {@link PiRuntimeErrorCode}). */
export class PiRuntimeError extends Error {
  readonly code: PiRuntimeErrorCode;

  constructor(code: PiRuntimeErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PiRuntimeError";
    this.code = code;
  }
}

/** The message of any thrown value (pi throws Errors, but be defensive). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The first line of an error message, trimmed (pi appends hints with server paths below it). */
export function firstLine(message: string): string {
  return message.split("\n", 1)[0]?.trim() || message;
}

/**
 * `err` unless it is a Node system error (`code` + `syscall`, e.g. ENOSPC from a write), whose
 * message names the file: then an Error `<what> (<code>)` with `err` as its cause, so no server
 * path reaches a client.
 */
export function withoutPath(err: unknown, what: string): unknown {
  const e = err as { code?: unknown; syscall?: unknown } | null;
  if (typeof e?.code === "string" && typeof e.syscall === "string") {
    return new Error(`${what} (${e.code})`, { cause: err });
  }
  return err;
}
