// Configuration: defaults, one clear line naming a bad variable, secrets out of the environment.
import { ConfigError, loadEnv, takeSecrets } from "@pi-fleet/config";
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

describe("takeSecrets", () => {
  it("removes provider keys from the environment and returns them", () => {
    const env: NodeJS.ProcessEnv = { OPENAI_API_KEY: "sk-1", PATH: "/bin" };
    expect(takeSecrets(env)).toEqual({ OPENAI_API_KEY: "sk-1" });
    expect(env.OPENAI_API_KEY).toBeUndefined();
    expect(env.PATH).toBe("/bin");
  });
});
