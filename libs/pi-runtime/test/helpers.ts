// Shared fixtures for pi-runtime tests: temp dirs, an org runtime with pi-ai's faux provider,
// and a sink that records wire events.
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type FauxProviderHandle, fauxProvider } from "@earendil-works/pi-ai";
import type { WireEvent } from "@pi-fleet/contracts";
import { afterEach } from "vitest";
import { type OrgRuntime, RuntimeCache, registerNativeProviderForTests } from "../src/index.ts";

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** Registers `fn` to run after the current test (LIFO). */
export function onCleanup(fn: () => Promise<void>): void {
  cleanups.push(fn);
}

/** A fresh temp dir removed after the test. */
export async function tempDir(prefix = "pf-rt-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  onCleanup(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Directories of one test session: workspace/{project, sessions}, plus a private agent dir. */
export async function sessionDirs(): Promise<{
  root: string;
  projectDir: string;
  sessionFile: string;
  agentDir: string;
}> {
  const root = await tempDir();
  const projectDir = join(root, "org", "project");
  const agentDir = join(root, "agent");
  await mkdir(projectDir, { recursive: true });
  await mkdir(agentDir, { recursive: true });
  return { root, projectDir, sessionFile: join(root, "org", "sessions", "s1.jsonl"), agentDir };
}

/** A new org runtime (own cache, so nothing is shared between tests) with a faux provider. */
export async function fauxRuntime(
  options: { tokensPerSecond?: number; reasoning?: boolean; modelIds?: string[] } = {},
): Promise<{ runtime: OrgRuntime; faux: FauxProviderHandle }> {
  const runtime = await new RuntimeCache().get({
    orgId: "o1",
    revision: "r1",
    providers: [],
    builtinKeys: {},
  });
  const faux = fauxProvider({
    provider: "faux",
    models: (options.modelIds ?? ["faux-1"]).map((id) => ({ id, reasoning: options.reasoning ?? false })),
    tokensPerSecond: options.tokensPerSecond ?? 0,
  });
  await registerNativeProviderForTests(runtime, faux.provider);
  return { runtime, faux };
}

/** A sink recording every wire event, with a promise-based wait for a matching one. */
export function recordingSink(): {
  events: WireEvent[];
  sink: (e: WireEvent) => void;
  waitFor: (pred: (e: WireEvent) => boolean) => Promise<WireEvent>;
} {
  const events: WireEvent[] = [];
  const waiters: { pred: (e: WireEvent) => boolean; resolve: (e: WireEvent) => void }[] = [];
  return {
    events,
    sink: (e) => {
      events.push(e);
      for (const w of [...waiters]) {
        if (w.pred(e)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(e);
        }
      }
    },
    waitFor: (pred) => {
      const hit = events.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve) => waiters.push({ pred, resolve }));
    },
  };
}

/** The event type, with the message role or the assistant event type appended (for order checks). */
export function label(e: WireEvent): string {
  if (e.type === "message_update") {
    const inner = e.assistantMessageEvent as { type?: string } | undefined;
    return `message_update:${inner?.type}`;
  }
  if (e.type === "message_start" || e.type === "message_end") {
    return `${e.type}:${(e.message as { role?: string } | undefined)?.role}`;
  }
  return e.type;
}

/** Labels with consecutive repeats collapsed (streaming deltas and tool updates vary in count). */
export function collapsedLabels(events: WireEvent[]): string[] {
  const out: string[] = [];
  for (const l of events.map(label)) if (out.at(-1) !== l) out.push(l);
  return out;
}

/**
 * Polls `check` every 20 ms until it holds or `timeoutMs` (ms) passed; resolves its last answer.
 */
export async function eventually(check: () => boolean, timeoutMs = 3000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return check();
}
