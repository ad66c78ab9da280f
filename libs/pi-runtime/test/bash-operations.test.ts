// The host bash spawner on its own: env, exit codes, time cap and abort.
import { describe, expect, it } from "vitest";
import { createHostBashOperations, minimalBashEnv } from "../src/bash-operations.ts";
import { tempDir } from "./helpers.ts";

async function exec(
  command: string,
  opts: { maxTimeoutMs?: number; timeout?: number; signal?: AbortSignal } = {},
) {
  const cwd = await tempDir();
  const ops = createHostBashOperations({
    cwd,
    env: minimalBashEnv(cwd, cwd, { FOO: "bar" }),
    maxTimeoutMs: opts.maxTimeoutMs ?? 10_000,
  });
  let output = "";
  const started = Date.now();
  const result = ops.exec(command, "/ignored", {
    onData: (d) => {
      output += d.toString();
    },
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.timeout !== undefined ? { timeout: opts.timeout } : {}),
  });
  return { result, cwd, output: () => output, elapsed: () => Date.now() - started };
}

describe("createHostBashOperations", () => {
  it("runs in the configured cwd with the given env, streaming stdout and stderr", async () => {
    const r = await exec('pwd; echo "$FOO" >&2; echo "$HOME"');
    expect(await r.result).toEqual({ exitCode: 0 });
    expect(r.output()).toContain(r.cwd);
    expect(r.output()).toContain("bar");
  });

  it("reports exit codes and signal deaths as 128 + signo", async () => {
    expect(await (await exec("exit 3")).result).toEqual({ exitCode: 3 });
    expect(await (await exec("kill -KILL $$")).result).toEqual({ exitCode: 137 });
    expect(await (await exec("kill -TERM $$")).result).toEqual({ exitCode: 143 });
  });

  it("caps the run time (the model's timeout can only lower the cap)", async () => {
    const capped = await exec("sleep 5", { maxTimeoutMs: 200 });
    await expect(capped.result).rejects.toThrow("timeout:0");
    expect(capped.elapsed()).toBeLessThan(3000);
    const lowered = await exec("sleep 5", { maxTimeoutMs: 60_000, timeout: 0.3 });
    await expect(lowered.result).rejects.toThrow(/^timeout:/);
    expect(lowered.elapsed()).toBeLessThan(3000);
  });

  it("rejects with 'aborted' on abort and does not wait for background children", async () => {
    const controller = new AbortController();
    const r = await exec("sleep 5", { signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    await expect(r.result).rejects.toThrow("aborted");
    expect(r.elapsed()).toBeLessThan(3000);
    const bg = await exec("(sleep 3; echo late) & echo early");
    expect(await bg.result).toEqual({ exitCode: 0 });
    expect(bg.elapsed()).toBeLessThan(2000);
  });
});
