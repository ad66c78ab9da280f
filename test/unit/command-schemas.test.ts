// The command schemas of `POST …/commands` (libs/contracts commands.ts) against the command sets
// they describe: the worker's command switch (libs/pi-runtime COMMAND_TYPES), the pi RPC socket's
// list of pi 0.87.1 commands, pi's thinking levels (pi-ai's runtime list) and, at the type level,
// pi's `RpcCommand` (checked by `npm run typecheck`: tsc -b includes test/). contracts cannot
// import pi-runtime or pi, so they are held together here. Also the shared null rule
// (withoutNullOptionals) and how the RPC socket turns a pi record into the route's body (unknown
// fields dropped as pi ignores them).

import { getSupportedThinkingLevels, type Model } from "@earendil-works/pi-ai";
import type { RpcCommand } from "@earendil-works/pi-coding-agent";
import {
  BASH_ID_MAX_LENGTH,
  COMMAND_REQUEST_TYPES,
  CommandRequest,
  type CommandRequestBody,
  type CommandType,
  commandSchema,
  PI_COMMAND_THINKING_LEVELS,
  withoutNullOptionals,
} from "@pi-fleet/contracts";
import { describe, expect, expectTypeOf, it } from "vitest";
import { commandCall, PI_RPC_COMMANDS } from "../../apps/gateway/src/rpc/rpc-commands.ts";
import { COMMAND_TYPES } from "../../libs/pi-runtime/src/commands/index.ts";
import { PI_THINKING_LEVELS } from "../../libs/pi-runtime/src/thinking-levels.ts";

// ---------------------------------------------------------------------------------------------
// Type level: each schema's Static type against pi's RpcCommand member of the same `type`.
// ---------------------------------------------------------------------------------------------

/** `T` with intersections flattened (per union member), so two spellings of one shape compare equal. */
type Flat<T> = T extends unknown ? { [K in keyof T]: T[K] } : never;
/** Exact type equality: a field's presence, type and optionality all count (not assignability). */
type Equal<A, B> = (<G>() => G extends A ? 1 : 2) extends <G>() => G extends B ? 1 : 2 ? true : false;
/** pi's command `T` (pi 0.87.1 `RpcCommand`, with its optional string `id`). */
type PiCommand<T extends string> = Extract<RpcCommand, { type: T }>;
/** The fleet's schema of command `T`, as a type. */
type FleetCommand<T extends CommandType> = Extract<CommandRequestBody, { type: T }>;
/**
 * What the fleet's schema of `T` must be: pi's shape, except `switch_session`'s `sessionPath`,
 * optional on purpose (the route refuses the command, and that refusal is what a client reads).
 */
type Expected<T extends CommandType> = T extends "switch_session"
  ? Flat<Omit<PiCommand<T>, "sessionPath"> & { sessionPath?: string }>
  : Flat<PiCommand<T>>;
/** The command types whose schema differs from pi's command (never when all agree). */
type Mismatched = {
  [T in CommandType]: Equal<Flat<FleetCommand<T>>, Expected<T>> extends true ? never : T;
}[CommandType];

/** pi commands with routes of their own (never sent to `POST …/commands` by the RPC socket). */
const OWN_ROUTES = ["prompt", "steer", "follow_up", "abort"];

describe("command schemas", () => {
  it("has a schema for every command the worker runs, and for no other", () => {
    for (const type of COMMAND_TYPES) expect(commandSchema(type), type).toBeDefined();
    expect([...COMMAND_REQUEST_TYPES].sort()).toEqual([...COMMAND_TYPES].sort());
  });

  it("covers pi's RPC command set except the commands with routes of their own", () => {
    const piCommands = [...PI_RPC_COMMANDS].filter((t) => !OWN_ROUTES.includes(t));
    expect([...COMMAND_REQUEST_TYPES].sort()).toEqual(piCommands.sort());
    for (const type of OWN_ROUTES) expect(commandSchema(type), type).toBeUndefined();
  });

  it("gives each command its type, pi's optional string id, and no other unnamed field", () => {
    for (const type of COMMAND_REQUEST_TYPES) {
      const schema = commandSchema(type);
      expect((schema as { additionalProperties?: unknown } | undefined)?.additionalProperties, type).toBe(
        false,
      );
      expect(schema?.properties.type).toMatchObject({ const: type });
      // Any length (pi has no limit), except a bash's: each of its output events carries it.
      const maxLength = type === "bash" ? BASH_ID_MAX_LENGTH : undefined;
      const id = schema?.properties.id as { type?: string; maxLength?: number } | undefined;
      expect(id?.type, type).toBe("string");
      expect(id?.maxLength, type).toBe(maxLength);
      expect(schema?.required, type).toContain("type");
      expect(schema?.required, type).not.toContain("id");
    }
    expect(CommandRequest.anyOf).toHaveLength(COMMAND_REQUEST_TYPES.length);
  });

  it("knows no command by an inherited property name", () => {
    for (const type of ["__proto__", "constructor", "toString", "hasOwnProperty"]) {
      expect(commandSchema(type), type).toBeUndefined();
    }
  });

  it("takes pi's thinking levels for set_thinking_level, in pi's order", () => {
    // pi's list at runtime: every level pi-ai knows is supported by a reasoning model that maps
    // each level (a proxy answers any key, so a level pi adds is listed too).
    const mapsEvery = new Proxy({}, { get: (_, level) => String(level) });
    const model = { reasoning: true, thinkingLevelMap: mapsEvery } as unknown as Model<string>;
    const piLevels = getSupportedThinkingLevels(model);
    expect(piLevels).toContain("max");
    expect([...PI_COMMAND_THINKING_LEVELS]).toEqual(piLevels);
    expect(commandSchema("set_thinking_level")?.properties.level).toMatchObject({ enum: piLevels });
    // The worker's list (libs/pi-runtime) is pi's too.
    expect([...PI_THINKING_LEVELS]).toEqual(piLevels);
  });

  it("spells every command as pi's RpcCommand does (checked by the type checker)", () => {
    // A field added, renamed, retyped or made optional in pi or in a schema fails the type check,
    // naming its command: "Type '"all agree"' is not assignable to type '"fork"'".
    const mismatched: [Mismatched] extends [never] ? "all agree" : Mismatched = "all agree";
    expect(mismatched).toBe("all agree");
    expectTypeOf<Mismatched>().toEqualTypeOf<never>();
    // The same command sets: pi's minus the four with routes of their own.
    expectTypeOf<Exclude<RpcCommand["type"], CommandType>>().toEqualTypeOf<
      "prompt" | "steer" | "follow_up" | "abort"
    >();
    expectTypeOf<Exclude<CommandType, RpcCommand["type"]>>().toEqualTypeOf<never>();
  });
});

describe("a null optional field", () => {
  it("counts as absent; a null required one, an unknown one and other values are kept", () => {
    const compact = commandSchema("compact");
    const bash = commandSchema("bash");
    if (!compact || !bash) throw new Error("no schema");
    expect(withoutNullOptionals(compact, { type: "compact", id: null, customInstructions: null })).toEqual({
      type: "compact",
    });
    expect(
      withoutNullOptionals(bash, { type: "bash", command: null, excludeFromContext: null, x: null }),
    ).toEqual({ type: "bash", command: null, x: null });
    expect(withoutNullOptionals(bash, { type: "bash", command: "ls", excludeFromContext: false })).toEqual({
      type: "bash",
      command: "ls",
      excludeFromContext: false,
    });
  });

  it("keeps a `__proto__` field a field (for the schema to refuse)", () => {
    const schema = commandSchema("get_state");
    if (!schema) throw new Error("no schema");
    const kept = withoutNullOptionals(schema, JSON.parse('{"type":"get_state","__proto__":{"x":1}}'));
    expect(Object.getPrototypeOf(kept)).toBe(Object.prototype);
    expect(Object.keys(kept)).toEqual(["type", "__proto__"]);
  });
});

describe("the RPC socket's command body", () => {
  it("keeps the command's own fields and drops the others, as pi ignores them", () => {
    expect(
      commandCall({ id: "r1", type: "set_session_name", name: "n", extra: 1, sessionFile: "/x" }),
    ).toEqual({ method: "POST", path: "/commands", body: { type: "set_session_name", id: "r1", name: "n" } });
  });

  it("drops a null optional field (read as absent) but keeps a null required one for the route to refuse", () => {
    expect(commandCall({ type: "compact", customInstructions: null }).body).toEqual({ type: "compact" });
    expect(commandCall({ type: "set_session_name", name: null }).body).toEqual({
      type: "set_session_name",
      name: null,
    });
  });

  it("passes wrongly typed fields on for the route to refuse", () => {
    expect(commandCall({ type: "set_auto_retry", enabled: "yes" }).body).toEqual({
      type: "set_auto_retry",
      enabled: "yes",
    });
  });

  it("forwards a string id, but not a bash id over the route's limit (pi refuses no id), and no other", () => {
    expect(commandCall({ id: "b1", type: "bash", command: "ls" }).body).toEqual({
      type: "bash",
      id: "b1",
      command: "ls",
    });
    expect(commandCall({ id: 7, type: "get_state" }).body).toEqual({ type: "get_state" });
    expect(commandCall({ id: null, type: "get_state" }).body).toEqual({ type: "get_state" });
    const long = "x".repeat(BASH_ID_MAX_LENGTH + 1);
    expect(commandCall({ id: long, type: "get_state" }).body).toEqual({ type: "get_state", id: long });
    expect(commandCall({ id: long, type: "bash", command: "ls" }).body).toEqual({
      type: "bash",
      command: "ls",
    });
  });
});
