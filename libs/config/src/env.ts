/**
 * The one environment schema of pi-fleet. Gateway, worker and single-node mode all read it, so a
 * variable means the same everywhere. Names are part of the contract (README "Configuration").
 * Secrets (provider keys) are read here once and then removed from `process.env` by the caller
 * (see `takeSecrets`), so the agent's shell can never inherit them.
 */
import { accessSync, constants } from "node:fs";
import { isAbsolute } from "node:path";
import { isSlug } from "@pi-fleet/contracts";
import { envSchema } from "env-schema";
import type { Static } from "typebox";
import { Type } from "typebox";
import { parseLitellm } from "./litellm.ts";

/** Shape of `PI_FLEET_SECRET_KEY`: 64 hex chars, or base64/base64url of 32 bytes (decoded in @pi-fleet/security). */
const SECRET_KEY_PATTERN = "^([0-9a-fA-F]{64}|[A-Za-z0-9+/_-]{43}=?)$";

/** JSON schema of every variable; each has a default except the secrets. */
export const EnvSchema = Type.Object({
  /** HTTP port of the gateway. */
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 4001 }),
  /** Listen address of the gateway. Open mode refuses anything but loopback. */
  HOST: Type.String({ minLength: 1, default: "127.0.0.1" }),
  /** Redis connection URL (redis:// or rediss://). */
  REDIS_URL: Type.String({ pattern: "^rediss?://", default: "redis://127.0.0.1:6379" }),
  /** Root of the shared workspace volume (project dirs and session transcripts). */
  WORKSPACE_DIR: Type.String({ minLength: 1, default: "./.pi-fleet/workspace" }),
  /** Prefix of every Redis key pi-fleet writes. */
  PI_FLEET_KEY_PREFIX: Type.String({ pattern: "^[A-Za-z0-9_-]{1,32}$", default: "pf" }),
  /** Stable id of this worker (lease owner name). Default: `<hostname>-<pid>`. */
  PI_FLEET_WORKER_ID: Type.Optional(Type.String({ pattern: "^[A-Za-z0-9._-]{1,128}$" })),
  /** pino level. */
  LOG_LEVEL: Type.Union(
    ["fatal", "error", "warn", "info", "debug", "trace", "silent"].map((l) => Type.Literal(l)),
    { default: "info" },
  ),
  /** Provider key for the `default` org's built-in `anthropic` provider (worker only). */
  ANTHROPIC_API_KEY: Type.Optional(Type.String()),
  /** Provider key for the `default` org's built-in `openai` provider (worker only). */
  OPENAI_API_KEY: Type.Optional(Type.String()),
  /**
   * LiteLLM preset: base URL of an operator-run LiteLLM proxy (http(s), no credentials), as pi's
   * client for `LITELLM_API` wants it (`http://litellm:4000/v1` for the OpenAI APIs). When set,
   * every org gets the custom provider `litellm` with `LITELLM_MODELS` (see litellm.ts).
   */
  LITELLM_BASE_URL: Type.Optional(Type.String()),
  /** Key sent to the LiteLLM proxy (worker only; a secret, removed from the env by `takeSecrets`). */
  LITELLM_API_KEY: Type.Optional(Type.String()),
  /** Comma-separated LiteLLM model ids (required with LITELLM_BASE_URL). */
  LITELLM_MODELS: Type.Optional(Type.String()),
  /** Default model for new sessions; must be one of LITELLM_MODELS. Default: the first listed. */
  LITELLM_DEFAULT_MODEL: Type.Optional(Type.String()),
  /** `openai-completions` (default), `openai-responses` or `anthropic-messages`. */
  LITELLM_API: Type.Optional(Type.String()),
  /**
   * 32-byte key that encrypts stored provider keys (AES-256-GCM), base64 (44 chars) or hex
   * (64 chars); gateway and worker need the same one. Generate: `openssl rand -base64 32`.
   * Unset (and no `PI_FLEET_SECRET_KEY_FILE`): open mode stores secrets unencrypted, with a warning.
   */
  PI_FLEET_SECRET_KEY: Type.Optional(Type.String({ pattern: SECRET_KEY_PATTERN })),
  /** File holding the key instead (the same text, or exactly 32 raw bytes); exclusive with the above. */
  PI_FLEET_SECRET_KEY_FILE: Type.Optional(Type.String({ minLength: 1 })),
  /** Entries kept per session stream (approximate MAXLEN trimming). */
  PI_FLEET_STREAM_MAXLEN: Type.Integer({ minimum: 100, maximum: 10_000_000, default: 10_000 }),
  /** Entries older than this (ms) are trimmed from a session stream on its next append; 0 = keep by count only. */
  PI_FLEET_STREAM_MAX_AGE_MS: Type.Integer({ minimum: 0, maximum: 366 * 24 * 3600_000, default: 0 }),
  /** Unsent bytes allowed per SSE/WebSocket client before it is cut with `stream_lagging`. */
  PI_FLEET_CLIENT_MAX_BUFFER_BYTES: Type.Integer({
    minimum: 16 * 1024,
    maximum: 1024 * 1024 * 1024,
    default: 8 * 1024 * 1024,
  }),
  /** Projects one worker may own at once. */
  PI_FLEET_MAX_PROJECTS: Type.Integer({ minimum: 1, maximum: 10_000, default: 50 }),
  /** Concurrent runs (distinct sessions) per project. */
  PI_FLEET_PROJECT_MAX_RUNS: Type.Integer({ minimum: 1, maximum: 1000, default: 4 }),
  /** Concurrent runs on one worker, across all its projects. */
  PI_FLEET_MAX_RUNS: Type.Integer({ minimum: 1, maximum: 10_000, default: 16 }),
  /** An owner releases a project after it had no work for this long (ms). */
  PI_FLEET_IDLE_RELEASE_MS: Type.Integer({ minimum: 100, maximum: 24 * 3600_000, default: 60_000 }),
  /**
   * A pi session of an owned project that no run or command used for this long (ms) is disposed
   * (its transcript stays; the next use reopens it), so a project that is never idle does not
   * keep every session it ever ran in memory.
   */
  PI_FLEET_SESSION_IDLE_MS: Type.Integer({ minimum: 100, maximum: 7 * 24 * 3600_000, default: 600_000 }),
  /**
   * A run recorded `queued` whose job never reached its project queue (the gateway died between
   * the two steps) is recorded `failed` once it is this old (ms) and a later run of its session
   * waits behind it; younger ones may still be on their way to the queue.
   */
  PI_FLEET_LOST_RUN_MS: Type.Integer({ minimum: 100, maximum: 24 * 3600_000, default: 10_000 }),
  /**
   * A fetched run whose session has an older open run waits for it in the worker for 500 ms,
   * then gives its queue slot back: it is deferred (delayed in the project queue) for this long
   * (ms) before it is fetched again, unless the end of the older run on the owner promotes it
   * first. Only runs that end elsewhere (a queued run cancelled through a gateway) rely on it.
   */
  PI_FLEET_DEFER_RETRY_MS: Type.Integer({ minimum: 10, maximum: 600_000, default: 100 }),
  /** On SIGTERM, running runs may finish for this long (ms) before they are interrupted. */
  PI_FLEET_DRAIN_TIMEOUT_MS: Type.Integer({ minimum: 0, maximum: 24 * 3600_000, default: 30_000 }),
  /** Port of the worker's own endpoints (`/healthz`, `/readyz`, `/metrics`); unset = none. */
  PI_FLEET_WORKER_PORT: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
  /**
   * Gateway only: a second listener (on HOST) serving `GET /metrics` without auth, for scrapers
   * that should not hold the operator token; unset = none (`/metrics` on PORT still works).
   */
  PI_FLEET_METRICS_PORT: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
  /**
   * Gateway only (`apps/gateway`): processes serving PORT (and PI_FLEET_METRICS_PORT) together
   * through node:cluster, each with its own stream hub and Redis connections; `1` = one process.
   * A gateway process is one JavaScript thread, so this is how one gateway uses several cores.
   */
  PI_FLEET_GATEWAY_PROCESSES: Type.Integer({ minimum: 1, maximum: 64, default: 1 }),
  /** Gateway only: serve the read-only Bull Board at `/v1/admin/queues/` (operator only in keyed mode). */
  PI_FLEET_QUEUE_BOARD: Type.Boolean({ default: true }),
  /** Project lease TTL in ms; renewed every TTL/3. */
  PI_FLEET_LEASE_TTL_MS: Type.Integer({ minimum: 500, maximum: 600_000, default: 3000 }),
  /** Largest accepted request body in bytes. */
  PI_FLEET_MAX_BODY_BYTES: Type.Integer({ minimum: 1024, maximum: 100 * 1024 * 1024, default: 1024 * 1024 }),
  /** Longest accepted prompt text in characters. */
  PI_FLEET_MAX_PROMPT_CHARS: Type.Integer({ minimum: 1, maximum: 10_000_000, default: 100_000 }),
  /**
   * Largest accepted image of a prompt / steer / follow-up, in decoded bytes (413 beyond). The
   * routes that take images accept bodies of PI_FLEET_MAX_BODY_BYTES plus the base64 size of
   * PI_FLEET_MAX_IMAGES such images.
   */
  PI_FLEET_MAX_IMAGE_BYTES: Type.Integer({
    minimum: 1024,
    maximum: 20 * 1024 * 1024,
    default: 5 * 1024 * 1024,
  }),
  /** Most images on one prompt / steer / follow-up (413 beyond); 0 refuses images. */
  PI_FLEET_MAX_IMAGES: Type.Integer({ minimum: 0, maximum: 32, default: 8 }),
  /** Per-command time cap of the agent's bash tool, in ms. */
  PI_FLEET_BASH_TIMEOUT_MS: Type.Integer({ minimum: 1000, maximum: 24 * 3600_000, default: 600_000 }),
  /**
   * How long the gateway waits for a long-running session command (`POST …/commands` and the RPC
   * socket: `compact`, and a user `bash`, which waits at least PI_FLEET_BASH_TIMEOUT_MS + 30 s) to
   * answer, in ms, before 503 PF_ERR_CONTROL_TIMEOUT (the command goes on). Other commands: 30 s.
   */
  PI_FLEET_COMMAND_TIMEOUT_MS: Type.Integer({ minimum: 1000, maximum: 24 * 3600_000, default: 600_000 }),
  /**
   * Where the agent's shell commands run (worker only): `none` on the host with a minimal env,
   * `bwrap` inside bubblewrap (`/usr/bin/bwrap`: only the project dir writable, no network,
   * private /tmp and PID namespace). Workers refuse to start when bwrap cannot run.
   */
  PI_FLEET_SANDBOX: Type.Enum(["none", "bwrap"], { default: "none" }),
  /** `true`: sandboxed commands share the worker's network (default: none at all). */
  PI_FLEET_SANDBOX_NETWORK: Type.Boolean({ default: false }),
  /** SSE heartbeat interval in ms; also the WebSocket ping interval (a socket silent for two is cut). */
  PI_FLEET_SSE_HEARTBEAT_MS: Type.Integer({ minimum: 100, maximum: 120_000, default: 15_000 }),
  /** Open (queued or running) runs one project may have; a prompt beyond it gets 429. 0 = no cap. */
  PI_FLEET_PROJECT_MAX_QUEUED: Type.Integer({ minimum: 0, maximum: 10_000_000, default: 1000 }),
  /** Open (queued or running) runs one org may have across its projects (429 beyond); 0 = no cap. */
  PI_FLEET_ORG_MAX_QUEUED: Type.Integer({ minimum: 0, maximum: 10_000_000, default: 10_000 }),
  /**
   * Runs one org may execute at once across the fleet (worker side); more wait in their queues
   * while other orgs' runs proceed. 0 = no cap.
   */
  PI_FLEET_ORG_MAX_RUNS: Type.Integer({ minimum: 0, maximum: 100_000, default: 64 }),
  /** Requests per minute per org, counted in Redis across all gateways (429 beyond); 0 = no limit. */
  PI_FLEET_ORG_RATE_LIMIT: Type.Integer({ minimum: 0, maximum: 10_000_000, default: 6000 }),
  /**
   * Open streams per API key (per org in open mode) on one gateway process: SSE streams, WebSockets
   * and each `/v1/ws` subscription (429 beyond).
   */
  PI_FLEET_MAX_STREAMS_PER_KEY: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 200 }),
  /** Comma-separated origins allowed by CORS (e.g. `https://app.example.com`); empty = no CORS headers. */
  PI_FLEET_CORS_ORIGINS: Type.String({ default: "" }),
  /**
   * Time a client has to send a whole request (headers and body), and one WebSocket message from
   * its first byte to its last (else the socket closes with 1009), in ms; streams are not cut by it.
   */
  PI_FLEET_REQUEST_TIMEOUT_MS: Type.Integer({ minimum: 1000, maximum: 3600_000, default: 30_000 }),
  /**
   * Operator pi extensions loaded into every session (worker only): comma-separated absolute
   * paths of `.ts`/`.js` files or pi package dirs. Trusted code, run in the worker process; a path
   * that fails to load fails the session open (a permission gate is never silently skipped).
   */
  PI_EXTENSION_PATHS: Type.String({ default: "" }),
  /** Operator skills for every session: comma-separated absolute paths (SKILL.md files or dirs). */
  PI_SKILL_PATHS: Type.String({ default: "" }),
  /** Operator prompt templates for every session: comma-separated absolute paths (.md files or dirs). */
  PI_PROMPT_PATHS: Type.String({ default: "" }),
  /** `true`: no extensions at all, operator or project. */
  PI_NO_EXTENSIONS: Type.Boolean({ default: false }),
  /** `true`: no skills at all, operator or project `.pi/skills`. */
  PI_NO_SKILLS: Type.Boolean({ default: false }),
  /** `true`: no prompt templates at all, operator or project `.pi/prompts`. */
  PI_NO_PROMPT_TEMPLATES: Type.Boolean({ default: false }),
  /**
   * Comma-separated org ids whose projects' `.pi/extensions` (tenant code, run in the worker
   * process) may load. Empty by default: project extensions never load; project skills, prompt
   * templates and AGENTS.md are text and load for every org.
   */
  PI_FLEET_TRUSTED_ORGS: Type.String({ default: "" }),
  /**
   * Absolute path of a directory copied into every project directory a worker creates (once:
   * an existing project dir is never seeded again; build caches are skipped, see the worker's
   * project-template.ts). Workers check at start that it is a readable directory outside
   * WORKSPACE_DIR; the gateway never reads it.
   */
  PI_FLEET_PROJECT_TEMPLATE_DIR: Type.Optional(Type.String({ minLength: 1 })),
  /**
   * Operator token for `/v1/admin/*` (at least 24 chars; `openssl rand -hex 32`). Setting it turns
   * on keyed mode: every `/v1` request needs an org API key. Unset: open mode (one `default` org
   * without auth, loopback only). A secret: removed from the environment at boot (takeSecrets).
   */
  PI_FLEET_ADMIN_TOKEN: Type.Optional(Type.String({ minLength: 24, maxLength: 512 })),
});

/** Validated configuration (defaults applied). */
export type Env = Static<typeof EnvSchema>;

/** Thrown when a variable is invalid; `message` is one line naming the variable. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/**
 * Validates `source` (default `process.env`) against {@link EnvSchema}.
 * @throws ConfigError with a one-line message such as `invalid configuration: PORT must be <= 65535`.
 */
export function loadEnv(source: NodeJS.ProcessEnv = process.env): Env {
  const data: Record<string, string> = {};
  for (const key of Object.keys(EnvSchema.properties)) {
    const value = source[key];
    if (value !== undefined && value !== "") data[key] = value;
  }
  let env: Env;
  try {
    env = envSchema<Env>({ schema: EnvSchema, data, dotenv: false });
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${describe(err)}`);
  }
  if (env.PI_FLEET_SECRET_KEY !== undefined && env.PI_FLEET_SECRET_KEY_FILE !== undefined) {
    throw new ConfigError(
      "invalid configuration: PI_FLEET_SECRET_KEY and PI_FLEET_SECRET_KEY_FILE are both set; set only one",
    );
  }
  for (const name of ["PI_EXTENSION_PATHS", "PI_SKILL_PATHS", "PI_PROMPT_PATHS"] as const) {
    if (splitList(env[name]).some((p) => !isAbsolute(p))) {
      throw new ConfigError(`invalid configuration: ${name} must be comma-separated absolute paths`);
    }
  }
  if (env.PI_FLEET_PROJECT_TEMPLATE_DIR !== undefined && !isAbsolute(env.PI_FLEET_PROJECT_TEMPLATE_DIR)) {
    throw new ConfigError("invalid configuration: PI_FLEET_PROJECT_TEMPLATE_DIR must be an absolute path");
  }
  try {
    parseLitellm(env);
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${(err as Error).message}`);
  }
  if (!splitList(env.PI_FLEET_TRUSTED_ORGS).every(isSlug)) {
    throw new ConfigError("invalid configuration: PI_FLEET_TRUSTED_ORGS must be comma-separated org ids");
  }
  if (env.PI_FLEET_SECRET_KEY_FILE !== undefined) {
    // Only readability here; the contents are key material, decoded by @pi-fleet/security at boot.
    try {
      accessSync(env.PI_FLEET_SECRET_KEY_FILE, constants.R_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? "unreadable";
      throw new ConfigError(`invalid configuration: PI_FLEET_SECRET_KEY_FILE cannot be read (${code})`);
    }
  }
  return env;
}

/** The items of a comma-separated variable, trimmed, empty ones dropped. */
export function splitList(value: string): string[] {
  return value
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
}

/** One ajv error as env-schema attaches them (`err.errors`). */
interface AjvIssue {
  keyword?: string;
  instancePath?: string;
  params?: { allowedValues?: unknown; allowedValue?: unknown };
}

/**
 * The values a variable may take when `err` says it matched none: an `enum` (`allowedValues`) or a
 * union of constants (one `const` error per branch, `allowedValue`). Undefined otherwise.
 */
function allowedValues(err: unknown): { name: string; values: string[] } | undefined {
  const issues = (err as { errors?: unknown }).errors;
  if (!Array.isArray(issues) || issues.length === 0) return undefined;
  const first = issues[0] as AjvIssue;
  const path = first.instancePath ?? "";
  const name = path.replace(/^\//, "");
  if (!name || !(first.keyword === "enum" || first.keyword === "const")) return undefined;
  const values: string[] = [];
  for (const issue of issues as AjvIssue[]) {
    if (issue.instancePath !== path) continue;
    if (issue.keyword === "enum" && Array.isArray(issue.params?.allowedValues)) {
      values.push(...issue.params.allowedValues.map(String));
    } else if (issue.keyword === "const" && issue.params && "allowedValue" in issue.params) {
      values.push(String(issue.params.allowedValue));
    }
  }
  return values.length > 0 ? { name, values } : undefined;
}

function describe(err: unknown): string {
  const raw = err instanceof Error ? err.message : String(err);
  // ajv says only "must be equal to one of the allowed values" / "must be equal to constant".
  const allowed = allowedValues(err);
  if (allowed) return `${allowed.name} must be one of ${allowed.values.join(", ")}`;
  // env-schema reports `env/PORT must be <= 65535, env/HOST ...`; keep the first, name the variable.
  const first = raw.split(",")[0] ?? raw;
  const message = first
    .replace(/^env\/?/, "")
    .replace(/^must have required property '([^']+)'/, "$1 is required");
  // Never echo the key's pattern (or anything of it): say what is expected instead.
  if (message.startsWith("PI_FLEET_ADMIN_TOKEN")) return "PI_FLEET_ADMIN_TOKEN must be 24 to 512 characters";
  return message.startsWith("PI_FLEET_SECRET_KEY must match pattern")
    ? "PI_FLEET_SECRET_KEY must be a 32-byte key, base64 (44 chars) or hex (64 chars)"
    : message;
}

/**
 * Removes provider secrets from `process.env` so no child process (the agent's bash tool
 * above all) can inherit them; returns what was removed. Call once at boot after `loadEnv`.
 */
export function takeSecrets(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const names = [
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "LITELLM_API_KEY",
    "PI_FLEET_ADMIN_TOKEN",
    "PI_FLEET_SECRET_KEY",
  ];
  const taken: Record<string, string> = {};
  for (const name of names) {
    const value = env[name];
    if (value) taken[name] = value;
    delete env[name];
  }
  return taken;
}
