/**
 * The Lua scripts of this package (`libs/streams/lua/`), each with the shared append library
 * (`lib-append.lua`: `pf_append`, `pf_fence`) prepended.
 */
import { readFileSync } from "node:fs";
import { LuaScript } from "@pi-fleet/redis";

const luaDir = new URL("../lua/", import.meta.url);
const lib = readFileSync(new URL("lib-append.lua", luaDir), "utf8");

/**
 * Loads `lua/<name>.lua` with the append library in front.
 * @param keys the script's number of KEYS (see the script's header)
 */
export function streamScript(name: string, keys: number): LuaScript {
  return new LuaScript(name, `${lib}\n${readFileSync(new URL(`${name}.lua`, luaDir), "utf8")}`, keys);
}
