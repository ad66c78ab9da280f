// A tenant's custom openai-completions provider end to end against testkit's scripted
// OpenAI-compatible server: keyless and keyed auth, streaming, a bash tool round trip, usage.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type FakeLlm, startFakeLlm } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openSession, type ProviderSpec, RuntimeCache } from "../src/index.ts";
import { collapsedLabels, onCleanup, recordingSink, sessionDirs } from "./helpers.ts";

let llm: FakeLlm;
beforeAll(async () => {
  llm = await startFakeLlm();
});
afterAll(async () => {
  await llm.close();
});

const provider = (apiKey?: string): ProviderSpec => ({
  provider: "acme-llm",
  name: "Acme LLM",
  baseUrl: llm.baseUrl,
  api: "openai-completions",
  ...(apiKey ? { apiKey } : {}),
  models: [{ id: "fake-model", contextWindow: 32_000, maxTokens: 4_096 }],
});

async function sessionWith(spec: ProviderSpec) {
  const runtime = await new RuntimeCache().get({
    orgId: "acme",
    revision: "1",
    providers: [spec],
    builtinKeys: {},
  });
  const dirs = await sessionDirs();
  const session = await openSession({ runtime, ...dirs });
  onCleanup(() => session.dispose());
  return { session, dirs };
}

describe("custom openai-completions provider", () => {
  it("works without a key (placeholder bearer) and runs a bash tool round trip", async () => {
    llm.reset();
    const { session, dirs } = await sessionWith(provider());
    expect(session.settings().model).toMatchObject({
      provider: "acme-llm",
      id: "fake-model",
      available: true,
    });
    const { events, sink } = recordingSink();
    const outcome = await session.run("[[bash:echo from-tool > made.txt; cat made.txt]]", {}, sink);

    expect(outcome.status).toBe("finished");
    expect(outcome.usage.input).toBeGreaterThan(0);
    expect(outcome.usage.output).toBeGreaterThan(0);
    expect(outcome.usage.totalTokens).toBe(outcome.usage.input + outcome.usage.output);
    expect(readFileSync(join(dirs.projectDir, "made.txt"), "utf8")).toBe("from-tool\n");
    expect(llm.requests).toHaveLength(2);
    expect(llm.requests[0]?.authorization).toBe("Bearer none");
    expect(llm.requests[0]?.body).toMatchObject({ model: "fake-model", stream: true });
    const labels = collapsedLabels(events);
    expect(labels).toContain("tool_execution_end");
    expect(labels.at(-1)).toBe("agent_settled");
    const last = session.messages().at(-1) as { role: string; content: { text?: string }[] };
    expect(last.role).toBe("assistant");
    expect(last.content.map((c) => c.text ?? "").join("")).toContain("tool said: from-tool");
  });

  it("sends the tenant's literal key and maps an upstream failure to failed", async () => {
    llm.reset();
    const { session } = await sessionWith(provider("$HOME-not-expanded"));
    const ok = await session.run("[[reply:hello there]]", {}, () => {});
    expect(ok.status).toBe("finished");
    expect(llm.requests[0]?.authorization).toBe("Bearer $HOME-not-expanded");

    const failed = await session.run("[[fail:400]]", {}, () => {});
    expect(failed.status).toBe("failed");
    expect(failed.error).toBeTruthy();
  });
});
