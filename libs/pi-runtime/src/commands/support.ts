// Shared pieces of the command handlers: what a handler may touch, result builders and argument
// readers that turn a malformed request into a CommandArgError ("invalid").
import type { AgentSession, BashOperations, ModelRuntime } from "@earendil-works/pi-coding-agent";
import type { OverflowLogs } from "../overflow-logs.ts";
import type { CommandRequest, CommandResult, OrgRuntime, SessionFiles } from "../types.ts";

/** What a command handler works on (built by PiAgentSession per call). */
export interface CommandContext {
  readonly session: AgentSession;
  /** The fleet id of `session`: the `sessionId` answers carry (pi's header id never leaves). */
  readonly sessionId: string;
  readonly runtime: OrgRuntime;
  readonly rt: ModelRuntime;
  /** The session's confined spawner for user bash commands (the bash tool's, its own instance). */
  readonly bashOperations: BashOperations;
  /** Where a user bash command's overflow log goes once the command ended. */
  readonly overflowLogs: OverflowLogs;
  /** A run is active: run() is in pi's preflight or pi is streaming. */
  readonly busy: boolean;
  /** The fleet's session-file operations (fork, clone, new_session); absent: those are unsupported. */
  readonly files?: SessionFiles;
}

/** One command: answers with a result, or throws (CommandArgError → "invalid", else pi's error text). */
export type CommandHandler = (
  ctx: CommandContext,
  request: CommandRequest,
) => CommandResult | Promise<CommandResult>;

/** A malformed or unresolvable argument; the dispatcher answers it with code "invalid". */
export class CommandArgError extends Error {
  override name = "CommandArgError";
}

/** Success, with `data` only when given (pi omits it for commands without a payload). */
export function ok(data?: unknown): CommandResult {
  return data === undefined ? { success: true } : { success: true, data };
}

/** Refusal of a command that needs an idle session (pi would abort the active run). */
export function busy(type: string): CommandResult {
  return { success: false, code: "busy", error: `${type} is not allowed while a run is active` };
}

/** A required string argument (may be empty). */
export function stringArg(request: CommandRequest, key: string): string {
  const value = request[key];
  if (typeof value !== "string") throw new CommandArgError(`${request.type}: "${key}" must be a string`);
  return value;
}

/** An optional string argument (absent or null → undefined). */
export function optionalStringArg(request: CommandRequest, key: string): string | undefined {
  return request[key] == null ? undefined : stringArg(request, key);
}

/** A required boolean argument. */
export function booleanArg(request: CommandRequest, key: string): boolean {
  const value = request[key];
  if (typeof value !== "boolean") throw new CommandArgError(`${request.type}: "${key}" must be a boolean`);
  return value;
}

/** An optional boolean argument (absent or null → undefined). */
export function optionalBooleanArg(request: CommandRequest, key: string): boolean | undefined {
  return request[key] == null ? undefined : booleanArg(request, key);
}

/** A required argument that must be one of `values`. */
export function oneOfArg<T extends string>(request: CommandRequest, key: string, values: readonly T[]): T {
  const value = request[key];
  if (typeof value !== "string" || !(values as readonly string[]).includes(value)) {
    throw new CommandArgError(`${request.type}: "${key}" must be one of ${values.join(", ")}`);
  }
  return value as T;
}
