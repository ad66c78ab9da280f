// A session outlives its process: run a prompt, stop single-node mode with SIGTERM (clean exit
// 0), start a new process on the same Redis, key prefix and workspace, and continue the same
// session. The model must see the earlier exchange, and history/stream must hold both.

import { access } from "node:fs/promises";
import { join } from "node:path";
import {
  type FakeLlm,
  messageText,
  openSse,
  type SseConnection,
  startFakeLlm,
  uniquePrefix,
} from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { collectUntil, endsRun, isEvent, wire } from "../support/events.ts";
import {
  api,
  createProject,
  createSession,
  eventsUrl,
  type HistoryMessage,
  prompt,
  registerFakeProvider,
  waitForRunEnd,
} from "../support/http.ts";
import { createTempWorkspace, startStack, stopAllStacks } from "../support/stack.ts";

let llm: FakeLlm;
let workspace: Awaited<ReturnType<typeof createTempWorkspace>>;
const sockets: SseConnection[] = [];

beforeAll(async () => {
  llm = await startFakeLlm();
  workspace = await createTempWorkspace();
});

afterAll(async () => {
  for (const s of sockets) s.close();
  await stopAllStacks();
  await llm?.close();
  await workspace?.remove();
});

function textOf(m: HistoryMessage): string {
  if (typeof m.content === "string") return m.content;
  return m.content
    .filter((c) => c.type === "text")
    .map((c) => c.text ?? "")
    .join("");
}

describe("restart", () => {
  it("continues a session in a new process after a clean SIGTERM shutdown", async () => {
    const opts = {
      redisUrl: inject("redisUrl"),
      prefix: uniquePrefix("e2e restart"),
      workspaceDir: workspace.workspaceDir,
    };
    const firstText = "[[tag:restart-one]] [[reply:first answer]]";
    const secondText = "[[reply:second]]";

    const one = await startStack(opts);
    await registerFakeProvider(one.url, llm);
    const projectId = await createProject(one.url, "Restart");
    const sid = await createSession(one.url, projectId);
    const p1 = await prompt(one.url, projectId, sid, firstText);
    const r1 = await waitForRunEnd(one.url, projectId, sid, p1.runId);
    expect(r1.status, r1.error).toBe("finished");

    const code = await one.stop("SIGTERM");
    expect(code, one.logs()).toBe(0);
    expect(one.child.signalCode).toBeNull();
    const transcript = join(workspace.workspaceDir, "default", "sessions", projectId, `${sid}.jsonl`);
    await expect(access(transcript)).resolves.toBeUndefined();

    const two = await startStack(opts);
    const http = api(two.url);
    // Everything is still known to the new process (state lives in Redis and the workspace).
    const providers = await http.get<{ providers: { provider: string; apiKeyConfigured: boolean }[] }>(
      "/v1/custom/providers",
    );
    expect(providers.json.providers).toEqual([
      expect.objectContaining({ provider: "fake", apiKeyConfigured: true }),
    ]);
    const oldRun = await http.get(`/v1/projects/${projectId}/sessions/${sid}/runs/${p1.runId}`);
    expect(oldRun.json).toMatchObject({ status: "finished" });

    const before = llm.requests.length;
    const p2 = await prompt(two.url, projectId, sid, secondText);
    const r2 = await waitForRunEnd(two.url, projectId, sid, p2.runId);
    expect(r2.status, r2.error).toBe("finished");
    expect(r2.seq).toBe(2);

    // The model got the earlier exchange as context.
    expect(llm.requests.length).toBeGreaterThan(before);
    const messages = llm.requests.at(-1)?.body.messages ?? [];
    const flat = messages.map((m) => ({ role: m.role, text: messageText(m.content) }));
    const u1 = flat.findIndex((m) => m.role === "user" && m.text.includes(firstText));
    const a1 = flat.findIndex((m) => m.role === "assistant" && m.text.includes("first answer"));
    const u2 = flat.findIndex((m) => m.role === "user" && m.text.includes(secondText));
    expect(u1, JSON.stringify(flat)).toBeGreaterThanOrEqual(0);
    expect(a1).toBeGreaterThan(u1);
    expect(u2).toBeGreaterThan(a1);
    expect(u2).toBe(flat.length - 1);

    // History holds both exchanges, in order.
    const history = await http.get<{ messages: HistoryMessage[] }>(
      `/v1/projects/${projectId}/sessions/${sid}`,
    );
    expect(history.status).toBe(200);
    expect(history.json.messages.map((m) => [m.role, textOf(m)])).toEqual([
      ["user", firstText],
      ["assistant", "first answer"],
      ["user", secondText],
      ["assistant", "second"],
    ]);

    // The session stream spans both processes: run 1 ends before run 2 is queued.
    const sse = await openSse(eventsUrl(two.url, projectId, sid, "0"));
    sockets.push(sse);
    const events = await collectUntil(sse, endsRun(p2.runId), 15_000);
    const end1 = events.findIndex(isEvent("run_finished", p1.runId));
    const queued2 = events.findIndex(isEvent("run_queued", p2.runId));
    expect(wire(events[0]!)).toMatchObject({ type: "run_queued", runId: p1.runId });
    expect(end1).toBeGreaterThan(0);
    expect(queued2).toBeGreaterThan(end1);
    expect(wire(events.at(-1)!)).toMatchObject({ type: "run_finished", runId: p2.runId });

    expect(await two.stop()).toBe(0);
  });
});
