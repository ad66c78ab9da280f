// `pifleet tail` run in-process (apps/cli/src/program.ts `run`) against a gateway that was never
// reachable — it exits 4 at once with "cannot reach …" (with `--after` it used to retry for
// ever) — and against a scripted loopback gateway whose event stream drops mid-way and refuses
// one reconnect: once the stream was established, that is retried and the tail carries on.
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../apps/cli/src/errors.ts";
import type { Io } from "../../apps/cli/src/io.ts";
import { run } from "../../apps/cli/src/program.ts";
import { textSink } from "../support/text-sink.ts";

let configDir: string;

beforeAll(async () => {
  configDir = await mkdtemp(join(tmpdir(), "pifleet-tail-"));
});

afterAll(async () => {
  await rm(configDir, { recursive: true, force: true });
});

/**
 * Runs the CLI in-process against `url`; after `timeoutMs` it presses Ctrl-C (the CLI then exits
 * 0 from `tail`) and reports `timedOut`.
 */
async function cli(argv: string[], url: string, timeoutMs = 5000) {
  const out = textSink();
  const err = textSink();
  let interrupt: (() => void) | undefined;
  const io: Io = {
    stdout: out.stream,
    stderr: err.stream,
    stdin: Readable.from([]),
    env: { PIFLEET_CONFIG_DIR: configDir, PIFLEET_URL: url, NO_COLOR: "1" },
    onInterrupt: (handler) => {
      interrupt = handler;
      return () => {
        interrupt = undefined;
      };
    },
  };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    interrupt?.();
  }, timeoutMs);
  const code = await run(argv, io);
  clearTimeout(timer);
  return { code, timedOut, stdout: out.text(), stderr: err.text() };
}

/** A loopback URL nothing listens on (fetch refuses well-known ports such as 9 by itself). */
async function closedPortUrl(): Promise<string> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return `http://127.0.0.1:${port}`;
}

describe("pifleet tail against a gateway that cannot be reached", () => {
  let closed: string;
  beforeAll(async () => {
    closed = await closedPortUrl();
  });

  for (const argv of [
    ["tail", "p", "s", "--after", "0"],
    ["tail", "p", "s", "--after", "1732212345678-3"],
    ["tail", "p", "s"],
  ]) {
    it(`${argv.slice(3).join(" ") || "(live)"}: exits 4 at once with a clear message`, async () => {
      const started = Date.now();
      const res = await cli(argv, closed);
      expect(res.timedOut, "it retried instead of failing").toBe(false);
      expect(res.code).toBe(ExitCode.unreachable);
      expect(res.stderr).toContain(`pifleet: cannot reach ${closed} (ECONNREFUSED)`);
      expect(res.stderr).toContain("hint: is the gateway running?");
      expect(Date.now() - started).toBeLessThan(3000);
    });
  }
});

describe("pifleet tail once the stream was established", () => {
  let server: Server;
  let url: string;
  let streams = 0;
  let states = 0;

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url?.endsWith("/state")) {
        states++;
        res.writeHead(200, { "content-type": "application/json" });
        // Running until the tail saw the run end, then idle at its last offset.
        res.end(
          JSON.stringify({ status: states === 1 ? "running" : "idle", queueLength: 0, lastOffset: "1-2" }),
        );
        return;
      }
      streams++;
      if (streams === 2) {
        req.socket.destroy(); // the gateway gone for a moment: the reconnect fails
        return;
      }
      res.writeHead(200, { "content-type": "text/event-stream" });
      if (streams === 1) {
        res.end(`id: 1-1\ndata: ${JSON.stringify({ type: "run_started", runId: "r1" })}\n\n`);
        return;
      }
      res.write(`id: 1-2\ndata: ${JSON.stringify({ type: "run_finished", runId: "r1" })}\n\n`);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("retries a dropped connection and a failed reconnect, then carries on", async () => {
    const res = await cli(["tail", "p", "s", "--after", "0", "--until-idle"], url, 10_000);
    expect(res.timedOut).toBe(false);
    expect(res.code).toBe(ExitCode.ok);
    expect(streams).toBe(3);
    expect(res.stderr).toMatch(/connection lost \(error: fetch failed\); resuming after 1-1/);
    expect(res.stderr).toContain("✓ run finished");
  });
});
