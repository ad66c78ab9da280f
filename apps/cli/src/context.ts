/**
 * What every command gets: the output, the effective connection (env over stored config over
 * the default) and a typed client for it, plus `call`, which turns a REST answer into its data or
 * a {@link CliError} carrying the gateway's `{error, code}`.
 */
import { createPiFleetClient, type PiFleetClient } from "@pi-fleet/client";
import { type Connection, configDir, loadConfig, resolveConnection } from "./config-store.ts";
import { apiError, toCliError } from "./errors.ts";
import type { Io } from "./io.ts";
import { Output } from "./output.ts";

/** Default timeout of one REST request (ms); `PIFLEET_TIMEOUT_MS` overrides it. Streams have none. */
export const DEFAULT_TIMEOUT_MS = 30_000;

/** The typed REST client (openapi-fetch). */
export type Api = PiFleetClient["api"];

/** What an openapi-fetch call resolves. */
export interface ApiResult<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/**
 * A fetch that puts a timeout on REST requests (openapi-fetch calls it with one `Request`) and
 * leaves SSE requests (URL + init with their own abort signal) alone.
 */
export function timeoutFetch(timeoutMs: number): typeof globalThis.fetch {
  return (input, init) => {
    if (init === undefined && input instanceof Request) {
      return globalThis.fetch(input, {
        signal: AbortSignal.any([input.signal, AbortSignal.timeout(timeoutMs)]),
      });
    }
    return globalThis.fetch(input, init);
  };
}

/** The state of one CLI invocation. */
export class Context {
  readonly io: Io;
  readonly out: Output;
  private conn: Connection | undefined;
  private clientInstance: PiFleetClient | undefined;

  constructor(io: Io, json: boolean) {
    this.io = io;
    this.out = new Output(io, json);
  }

  /** The config dir (`PIFLEET_CONFIG_DIR` or the user's config dir). */
  get configDir(): string {
    return configDir(this.io.env);
  }

  /** Timeout of one REST request (ms). */
  get timeoutMs(): number {
    const raw = Number(this.io.env.PIFLEET_TIMEOUT_MS);
    return Number.isFinite(raw) && raw > 0 ? raw : DEFAULT_TIMEOUT_MS;
  }

  /** The effective connection (read once). */
  async connection(): Promise<Connection> {
    this.conn ??= resolveConnection(await loadConfig(this.configDir), this.io.env);
    return this.conn;
  }

  /** A client for `conn` (default: the effective connection). */
  async client(conn?: Connection): Promise<PiFleetClient> {
    if (conn) return this.makeClient(conn);
    this.clientInstance ??= this.makeClient(await this.connection());
    return this.clientInstance;
  }

  private makeClient(conn: Connection): PiFleetClient {
    return createPiFleetClient({
      baseUrl: conn.url,
      ...(conn.key === undefined ? {} : { apiKey: conn.key }),
      fetch: timeoutFetch(this.timeoutMs),
      headers: { "user-agent": "pifleet-cli/0.1.0" },
    });
  }

  /**
   * Runs one REST request and resolves its 2xx body. Throws a {@link CliError} `what: <error>
   * (<code>)` for an error answer (exit 4 for 401/403, else 1) and for network failures (exit 4).
   * Shows a spinner saying `opts.progress` when the answer takes a while. `opts.conn` talks to
   * another gateway than the effective one (login checks new credentials).
   */
  async call<T>(
    what: string,
    request: (api: Api) => Promise<ApiResult<T>>,
    opts: { progress?: string; conn?: Connection } = {},
  ): Promise<T> {
    const conn = opts.conn ?? (await this.connection());
    const client = await this.client(opts.conn);
    let res: ApiResult<T>;
    try {
      res = await this.out.withSpinner(opts.progress ?? "contacting the gateway…", () => request(client.api));
    } catch (err) {
      throw toCliError(err, conn.url);
    }
    if (res.error !== undefined || !res.response.ok) throw apiError(what, res.response.status, res.error);
    return res.data as T;
  }
}
