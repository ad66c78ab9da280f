// Configuration: defaults, one clear line naming a bad variable, secrets out of the environment.
import {
  ConfigError,
  describeStartupFailure,
  loadEnv,
  redactRedisUrl,
  redisTarget,
  takeSecrets,
} from "@pi-fleet/config";
import { describe, expect, it } from "vitest";

describe("loadEnv", () => {
  it("applies the documented defaults", () => {
    const env = loadEnv({});
    expect(env.PORT).toBe(4001);
    expect(env.HOST).toBe("127.0.0.1");
    expect(env.REDIS_URL).toBe("redis://127.0.0.1:6379");
    expect(env.WORKSPACE_DIR).toBe("./.pi-fleet/workspace");
    expect(env.PI_FLEET_KEY_PREFIX).toBe("pf");
    expect(env.LOG_LEVEL).toBe("info");
    expect(env.PI_FLEET_GATEWAY_PROCESSES).toBe(1);
    expect(loadEnv({ PI_FLEET_GATEWAY_PROCESSES: "4" }).PI_FLEET_GATEWAY_PROCESSES).toBe(4);
  });

  it("fails with one line naming the variable", () => {
    for (const [name, value] of [
      ["PORT", "99999"],
      ["PORT", "abc"],
      ["REDIS_URL", "http://x"],
      ["PI_FLEET_KEY_PREFIX", "a:b"],
      ["LOG_LEVEL", "loud"],
      ["PI_FLEET_GATEWAY_PROCESSES", "0"],
      ["PI_FLEET_GATEWAY_PROCESSES", "65"],
      ["PI_FLEET_GATEWAY_PROCESSES", "two"],
    ] as const) {
      let error: unknown;
      try {
        loadEnv({ [name]: value });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ConfigError);
      const message = (error as Error).message;
      expect(message).toContain(name);
      expect(message).not.toContain("\n");
    }
  });
});

describe("loadEnv errors for enums and constants", () => {
  it("name the allowed values", () => {
    for (const [name, value, expected] of [
      ["LOG_LEVEL", "verbose", "LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent"],
      ["PI_FLEET_SANDBOX", "docker", "PI_FLEET_SANDBOX must be one of none, bwrap"],
    ] as const) {
      expect(() => loadEnv({ [name]: value })).toThrow(new ConfigError(`invalid configuration: ${expected}`));
    }
  });
});

describe("the Redis a process logs at boot", () => {
  it("never shows a password, keeps the rest", () => {
    for (const [url, shown] of [
      ["redis://127.0.0.1:6379", "redis://127.0.0.1:6379"],
      ["redis://:s3cret@redis:6379/2", "redis://***@redis:6379/2"],
      ["rediss://app:p%40ss@redis.example:6380", "rediss://***@redis.example:6380"],
      ["redis://redis:6379?password=s3cret&db=1", "redis://redis:6379?password=***&db=1"],
      ["redis://redis?sentinelPassword=s3cret", "redis://redis?sentinelPassword=***"],
      ["redis://:s3/cret@redis:6379", "redis://***@redis:6379"],
      // An `@` in the query is not the end of the user info.
      ["redis://host:6379/0?password=hunter@2secret", "redis://host:6379/0?password=***"],
      ["redis://host:6379/0?x=a@b&password=topsecret", "redis://host:6379/0?x=a%40b&password=***"],
      ["redis://:pw@host/0?name=a@b", "redis://***@host/0?name=a@b"],
      ["redis://[::1]:6379", "redis://[::1]:6379"],
      // Parses, but as host "u" and port 1234: the password would be left in the path.
      ["redis://u:1234/x@host:6379", "redis://***@host:6379"],
      // Does not parse (port out of range): the query goes too.
      ["redis://host:99999?password=s3cret", "redis://host:99999?***"],
    ] as const) {
      expect(redactRedisUrl(url)).toBe(shown);
    }
    expect(redisTarget(loadEnv({ REDIS_URL: "redis://u:s3cret@h:1", PI_FLEET_KEY_PREFIX: "fleet" }))).toEqual(
      {
        redis: "redis://***@h:1",
        keyPrefix: "fleet",
      },
    );
    const line = describeStartupFailure("pi-fleet", new Error("connect ECONNREFUSED"), "redis://:s3cret@h:1");
    expect(line).toBe("pi-fleet: cannot reach Redis at redis://***@h:1 (connect ECONNREFUSED)");
  });
});

describe("takeSecrets", () => {
  it("removes provider keys from the environment and returns them", () => {
    const env: NodeJS.ProcessEnv = { OPENAI_API_KEY: "sk-1", PATH: "/bin" };
    expect(takeSecrets(env)).toEqual({ OPENAI_API_KEY: "sk-1" });
    expect(env.OPENAI_API_KEY).toBeUndefined();
    expect(env.PATH).toBe("/bin");
  });
});
