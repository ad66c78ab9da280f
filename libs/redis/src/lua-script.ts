/**
 * Runs a Lua script by SHA with an EVAL fallback on NOSCRIPT (after a Redis restart or a failover
 * the script cache is empty). Scripts live as `.lua` files next to the package that owns them.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";

/** A Lua script with a fixed number of KEYS. */
export class LuaScript {
  readonly name: string;
  readonly source: string;
  readonly sha: string;
  readonly numberOfKeys: number;

  constructor(name: string, source: string, numberOfKeys: number) {
    this.name = name;
    this.source = source;
    this.numberOfKeys = numberOfKeys;
    this.sha = createHash("sha1").update(source).digest("hex");
  }

  /** Loads `<name>.lua` from the directory URL `dir` (e.g. `new URL("../lua/", import.meta.url)`). */
  static fromFile(dir: URL, name: string, numberOfKeys: number): LuaScript {
    return new LuaScript(name, readFileSync(new URL(`${name}.lua`, dir), "utf8"), numberOfKeys);
  }

  /**
   * Runs the script. `keys.length` must equal `numberOfKeys`.
   * @throws the Redis error (e.g. a script's own `error_reply`) unchanged.
   */
  async run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    if (keys.length !== this.numberOfKeys)
      throw new Error(`${this.name}: expected ${this.numberOfKeys} keys`);
    try {
      return await redis.evalsha(this.sha, this.numberOfKeys, ...keys, ...args);
    } catch (err) {
      if (err instanceof Error && err.message.startsWith("NOSCRIPT")) {
        return await redis.eval(this.source, this.numberOfKeys, ...keys, ...args);
      }
      throw err;
    }
  }
}
