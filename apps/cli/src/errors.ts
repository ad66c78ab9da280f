/**
 * Exit codes and the one error type the CLI throws. Everything that goes wrong ends up as a
 * {@link CliError}: a one-line message (the gateway's `{error, code}` when there is one), an
 * optional hint, and the exit code — never a stack trace.
 */
import { PiFleetApiError } from "@pi-fleet/client";

/** Process exit codes (documented in apps/cli/README.md). */
export const ExitCode = {
  /** Success; `prompt --follow`: the run finished. */
  ok: 0,
  /** The gateway refused a request (4xx/5xx other than auth), or the followed run failed. */
  failure: 1,
  /** Bad command line: unknown command or option, missing or malformed argument. */
  usage: 2,
  /** The followed run was aborted, interrupted or cancelled. */
  runStopped: 3,
  /** Authentication refused (401/403), or the gateway could not be reached / timed out. */
  unreachable: 4,
  /** Ctrl-C while waiting (following a prompt, answering a dialog). */
  interrupted: 130,
} as const;

/** An error to report to the user: `message` on stderr, then `hint`, then exit with `exitCode`. */
export class CliError extends Error {
  override name = "CliError";
  readonly exitCode: number;
  readonly hint: string | undefined;
  /** The message was already shown (e.g. a failed run's last line): only exit. */
  readonly silent: boolean;

  constructor(
    message: string,
    exitCode: number = ExitCode.failure,
    opts: { hint?: string; silent?: boolean } = {},
  ) {
    super(message);
    this.exitCode = exitCode;
    this.hint = opts.hint;
    this.silent = opts.silent ?? false;
  }
}

/** A command-line mistake found after parsing (exit 2). */
export function usageError(message: string, hint?: string): CliError {
  return new CliError(message, ExitCode.usage, hint === undefined ? {} : { hint });
}

/** True when `body` is a gateway error body `{error, code}`. */
function errorBody(body: unknown): { error: string; code: string } | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const { error, code } = body as { error?: unknown; code?: unknown };
  return typeof error === "string" && typeof code === "string" ? { error, code } : undefined;
}

const AUTH_HINT = "check the API key: `pifleet login` (or set PIFLEET_KEY)";

/**
 * The error for a gateway answer with status `status` and body `body` while doing `what`
 * (e.g. "cannot create the project"): `what: <error> (<code>)`. 401/403 exit with 4.
 */
export function apiError(what: string, status: number, body: unknown): CliError {
  const b = errorBody(body);
  const detail = b ? `${b.error} (${b.code})` : `HTTP ${status}`;
  if (status === 401 || status === 403) {
    return new CliError(`${what}: ${detail}`, ExitCode.unreachable, { hint: AUTH_HINT });
  }
  return new CliError(`${what}: ${detail}`, ExitCode.failure);
}

function causeCode(err: unknown): string | undefined {
  const cause = (err as { cause?: unknown }).cause;
  if (typeof cause !== "object" || cause === null) return undefined;
  const code = (cause as { code?: unknown }).code;
  if (typeof code === "string") return code;
  const message = (cause as { message?: unknown }).message;
  return typeof message === "string" ? message : undefined;
}

/**
 * Turns anything thrown while talking to the gateway at `baseUrl` into a {@link CliError}:
 * network failures and timeouts (exit 4), refused streams ({@link PiFleetApiError}), or else the
 * error's message (exit 1).
 */
export function toCliError(err: unknown, baseUrl: string | undefined): CliError {
  if (err instanceof CliError) return err;
  if (err instanceof PiFleetApiError) return apiError("the gateway refused the stream", err.status, err.body);
  if (err instanceof Error) {
    const where = baseUrl ?? "the gateway";
    if (err.name === "TimeoutError") {
      return new CliError(`no answer from ${where} in time`, ExitCode.unreachable, {
        hint: "raise PIFLEET_TIMEOUT_MS or check the gateway",
      });
    }
    if (err instanceof TypeError && /fetch failed/i.test(err.message)) {
      const code = causeCode(err);
      return new CliError(`cannot reach ${where}${code ? ` (${code})` : ""}`, ExitCode.unreachable, {
        hint: "is the gateway running? Set the URL with `pifleet login --url …` or PIFLEET_URL",
      });
    }
    return new CliError(err.message, ExitCode.failure);
  }
  return new CliError(String(err), ExitCode.failure);
}
