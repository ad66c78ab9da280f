// LITELLM_* and PI_FLEET_PROJECT_TEMPLATE_DIR validation: one clear startup line per mistake,
// the default model listed first, and the LiteLLM key treated as a secret.
import {
  ConfigError,
  describeStartupFailure,
  LITELLM_DEFAULT_API,
  loadEnv,
  parseLitellm,
  takeSecrets,
} from "@pi-fleet/config";
import { describe, expect, it } from "vitest";

const BASE = { LITELLM_BASE_URL: "http://litellm.internal:4000/v1", LITELLM_MODELS: "gpt-4o, claude-sonnet" };

/** The startup line loadEnv's failure becomes (the path every entry point prints). */
function startupLine(source: Record<string, string>): string {
  let error: unknown;
  try {
    loadEnv(source);
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(ConfigError);
  const line = describeStartupFailure("pi-fleet worker", error);
  expect(line).toBeDefined();
  expect(line).not.toContain("\n");
  return line!;
}

describe("LiteLLM preset settings", () => {
  it("is off without LITELLM_BASE_URL", () => {
    expect(parseLitellm(loadEnv({}))).toBeUndefined();
  });

  it("defaults to openai-completions and the first listed model, in listed order", () => {
    expect(parseLitellm(loadEnv(BASE))).toEqual({
      baseUrl: "http://litellm.internal:4000/v1",
      api: LITELLM_DEFAULT_API,
      models: ["gpt-4o", "claude-sonnet"],
      defaultModel: "gpt-4o",
    });
    expect(LITELLM_DEFAULT_API).toBe("openai-completions");
  });

  it("lists LITELLM_DEFAULT_MODEL first and accepts every supported API", () => {
    for (const api of ["openai-completions", "openai-responses", "anthropic-messages"]) {
      const env = loadEnv({
        ...BASE,
        LITELLM_MODELS: "a,b/c:latest,d",
        LITELLM_DEFAULT_MODEL: "d",
        LITELLM_API: api,
      });
      expect(parseLitellm(env)).toMatchObject({ api, models: ["d", "a", "b/c:latest"], defaultModel: "d" });
    }
  });

  it("refuses bad settings with one line naming the variable", () => {
    const cases: [Record<string, string>, string][] = [
      [{ ...BASE, LITELLM_BASE_URL: "not a url" }, "LITELLM_BASE_URL must be an http(s) URL"],
      [{ ...BASE, LITELLM_BASE_URL: "ftp://litellm/v1" }, "LITELLM_BASE_URL must be an http(s) URL"],
      [
        { ...BASE, LITELLM_BASE_URL: "http://user:pw@litellm/v1" },
        "LITELLM_BASE_URL must not contain credentials",
      ],
      [{ LITELLM_BASE_URL: BASE.LITELLM_BASE_URL }, "LITELLM_MODELS must list at least one model id"],
      [{ ...BASE, LITELLM_MODELS: " , " }, "LITELLM_MODELS must list at least one model id"],
      [{ ...BASE, LITELLM_MODELS: "a,,b" }, "LITELLM_MODELS has an empty model id"],
      [{ ...BASE, LITELLM_MODELS: "a,a" }, 'LITELLM_MODELS lists "a" twice'],
      [{ ...BASE, LITELLM_MODELS: "a b" }, "LITELLM_MODELS: invalid model id"],
      [{ ...BASE, LITELLM_MODELS: "x".repeat(201) }, "LITELLM_MODELS: invalid model id"],
      [{ ...BASE, LITELLM_DEFAULT_MODEL: "gpt-5" }, 'LITELLM_DEFAULT_MODEL "gpt-5" is not in LITELLM_MODELS'],
      [
        { ...BASE, LITELLM_API: "bedrock" },
        "LITELLM_API must be one of openai-completions, openai-responses",
      ],
      [
        { LITELLM_MODELS: "a", LITELLM_API_KEY: "sk-1" },
        "LITELLM_API_KEY, LITELLM_MODELS set but LITELLM_BASE_URL",
      ],
    ];
    for (const [source, expected] of cases) {
      const line = startupLine(source);
      expect(line).toContain("pi-fleet worker: invalid configuration: ");
      expect(line).toContain(expected);
    }
  });

  it("never echoes the key in an error", () => {
    const line = startupLine({ ...BASE, LITELLM_API_KEY: "sk-litellm-secret", LITELLM_API: "nope" });
    expect(line).not.toContain("sk-litellm-secret");
  });

  it("takes LITELLM_API_KEY out of the environment like the other provider keys", () => {
    const env: NodeJS.ProcessEnv = { ...BASE, LITELLM_API_KEY: "sk-litellm", PATH: "/bin" };
    expect(takeSecrets(env)).toEqual({ LITELLM_API_KEY: "sk-litellm" });
    expect(env.LITELLM_API_KEY).toBeUndefined();
    expect(env.LITELLM_BASE_URL).toBe(BASE.LITELLM_BASE_URL);
  });
});

describe("PI_FLEET_PROJECT_TEMPLATE_DIR", () => {
  it("is optional and must be absolute", () => {
    expect(loadEnv({}).PI_FLEET_PROJECT_TEMPLATE_DIR).toBeUndefined();
    expect(loadEnv({ PI_FLEET_PROJECT_TEMPLATE_DIR: "/srv/template" }).PI_FLEET_PROJECT_TEMPLATE_DIR).toBe(
      "/srv/template",
    );
    expect(startupLine({ PI_FLEET_PROJECT_TEMPLATE_DIR: "template" })).toBe(
      "pi-fleet worker: invalid configuration: PI_FLEET_PROJECT_TEMPLATE_DIR must be an absolute path",
    );
  });
});
