// The command schemas of `POST …/commands` (libs/contracts commands.ts) against the command sets
// they describe: the worker's command switch (libs/pi-runtime COMMAND_TYPES), the pi RPC socket's
// list of pi 0.87.1 commands, and pi's thinking levels. contracts cannot import pi-runtime, so
// the three are held together here. Also how the RPC socket turns a pi record into the route's
// body (unknown fields dropped as pi ignores them).
import {
  COMMAND_ID_MAX_LENGTH,
  COMMAND_REQUEST_TYPES,
  CommandRequest,
  commandSchema,
  PI_COMMAND_THINKING_LEVELS,
} from "@pi-fleet/contracts";
import { describe, expect, it } from "vitest";
import { commandCall, PI_RPC_COMMANDS } from "../../apps/gateway/src/rpc/rpc-commands.ts";
import { COMMAND_TYPES } from "../../libs/pi-runtime/src/commands/index.ts";
import { PI_THINKING_LEVELS } from "../../libs/pi-runtime/src/thinking-levels.ts";

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
      expect(schema?.properties.id).toMatchObject({ type: "string", maxLength: COMMAND_ID_MAX_LENGTH });
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

  it("takes pi's thinking levels for set_thinking_level", () => {
    expect([...PI_COMMAND_THINKING_LEVELS]).toEqual([...PI_THINKING_LEVELS]);
    expect(commandSchema("set_thinking_level")?.properties.level).toMatchObject({
      enum: [...PI_THINKING_LEVELS],
    });
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

  it("forwards a string id the route accepts, and no other", () => {
    expect(commandCall({ id: "b1", type: "bash", command: "ls" }).body).toEqual({
      type: "bash",
      id: "b1",
      command: "ls",
    });
    expect(commandCall({ id: 7, type: "get_state" }).body).toEqual({ type: "get_state" });
    const long = "x".repeat(COMMAND_ID_MAX_LENGTH + 1);
    expect(commandCall({ id: long, type: "get_state" }).body).toEqual({ type: "get_state" });
  });
});
