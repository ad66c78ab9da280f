// Operator presets: per-model defaults, and an org's own provider with a preset's id replacing it.
import {
  type CustomProviderConfig,
  customModelRow,
  PRESET_MODEL_DEFAULTS,
  presetProviderConfig,
  withPresets,
} from "@pi-fleet/registry";
import { describe, expect, it } from "vitest";

const preset = presetProviderConfig({
  provider: "litellm",
  name: "LiteLLM",
  baseUrl: "http://litellm:4000/v1",
  api: "openai-completions",
  models: ["default-model", "other"],
});

describe("presetProviderConfig", () => {
  it("gives every model the documented defaults and keeps the order", () => {
    expect(preset.models.map((m) => m.id)).toEqual(["default-model", "other"]);
    for (const m of preset.models) {
      expect(m).toMatchObject({ ...PRESET_MODEL_DEFAULTS, name: m.id });
      expect(customModelRow(preset, m)).toMatchObject({
        provider: "litellm",
        api: "openai-completions",
        available: true,
        reasoning: false,
        input: ["text"],
        contextWindow: 128_000,
        maxTokens: 16_384,
      });
    }
    expect(preset).not.toHaveProperty("apiKey");
  });
});

describe("withPresets", () => {
  const own: CustomProviderConfig = {
    provider: "mine",
    baseUrl: "http://x/v1",
    api: "openai-completions",
    models: [],
  };

  it("lists the org's providers first, then the presets", () => {
    expect(withPresets([own], [preset]).map((p) => p.provider)).toEqual(["mine", "litellm"]);
    expect(withPresets([], [preset])).toEqual([preset]);
  });

  it("drops a preset the org shadows with its own provider of the same id", () => {
    const override: CustomProviderConfig = { ...own, provider: "litellm" };
    expect(withPresets([override], [preset])).toEqual([override]);
  });
});
