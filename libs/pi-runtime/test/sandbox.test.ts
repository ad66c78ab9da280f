// PI_FLEET_SANDBOX=bwrap: the agent's bash tool and the user's bash command run inside
// bubblewrap. Real pi sessions (faux model) check that nothing outside the project is readable,
// the network is unreachable unless opted in, the project is writable and the env is minimal.
// The sandbox cases are skipped, with the reason in their name, only where bwrap cannot run.
import { readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { fauxAssistantMessage, fauxToolCall } from "@earendil-works/pi-ai";
import { describe, expect, it } from "vitest";
import { createHostBashOperations, minimalBashEnv } from "../src/bash-operations.ts";
import { openSession } from "../src/index.ts";
import { bwrapInvocation, probeSandbox, SandboxUnavailableError } from "../src/sandbox.ts";
import { fauxRuntime, onCleanup, recordingSink, sessionDirs, tempDir } from "./helpers.ts";

const skipReason = await probeSandbox({ mode: "bwrap" }).then(
  () => undefined,
  (err: unknown) => (err as Error).message,
);
const sandboxSuite = `bwrap sandbox${skipReason ? ` (SKIPPED: ${skipReason})` : ""}`;

interface ToolResultMessage {
  role: string;
  toolCallId: string;
  isError: boolean;
  content: { type: string; text?: string }[];
}

/** A loopback TCP server counting the connections it accepted. */
async function listener(): Promise<{ port: number; connections: () => number }> {
  let count = 0;
  const server: Server = createServer((socket) => {
    count++;
    socket.on("error", () => {}); // the client may close without reading
    socket.end("hello\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("no port");
  return { port: address.port, connections: () => count };
}

/** One turn in which the model runs each command with the bash tool; outputs by call id. */
async function runBash(
  commands: Record<string, string>,
  sandbox: { mode: "bwrap"; network?: boolean },
): Promise<{ outputs: Map<string, string>; dirs: Awaited<ReturnType<typeof sessionDirs>> }> {
  const dirs = await sessionDirs();
  const { runtime, faux } = await fauxRuntime();
  faux.setResponses([
    fauxAssistantMessage(
      Object.entries(commands).map(([id, command]) => fauxToolCall("bash", { command }, { id })),
      { stopReason: "toolUse" },
    ),
    fauxAssistantMessage("done"),
  ]);
  const session = await openSession({ runtime, ...dirs, sandbox });
  onCleanup(() => session.dispose());
  expect((await session.run("go", {}, recordingSink().sink)).status).toBe("finished");
  const outputs = new Map<string, string>();
  for (const m of session.messages() as ToolResultMessage[]) {
    if (m.role === "toolResult") outputs.set(m.toolCallId, m.content.map((c) => c.text ?? "").join(""));
  }
  return { outputs, dirs };
}

describe.skipIf(skipReason !== undefined)(sandboxSuite, () => {
  it("bash sees nothing outside the project, no network, a writable project and a minimal env", async () => {
    process.env.PF_SANDBOX_TEST_SECRET = "do-not-leak-9876";
    onCleanup(async () => {
      delete process.env.PF_SANDBOX_TEST_SECRET;
    });
    const workerTmp = await tempDir("pf-worker-tmp-");
    const secret = join(workerTmp, "secret.txt");
    await writeFile(secret, "TOP SECRET\n");
    const server = await listener();
    const { outputs, dirs } = await runBash(
      {
        outside: `cat ${secret} && echo READ-OK || echo READ-FAILED; ls /home /root /var /etc/shadow 2>&1 | head -5`,
        net: `(exec 3<>/dev/tcp/127.0.0.1/${server.port}) 2>/dev/null && echo CONNECTED || echo NO-NETWORK`,
        write: 'echo written > made-in-sandbox.txt && echo "pwd=$(pwd)" && id -un',
        env: 'echo "[$PF_SANDBOX_TEST_SECRET]"; env | cut -d= -f1 | sort | tr "\\n" " "',
        procs: "ps -e -o pid= | wc -l; cat /proc/1/cmdline | tr '\\0' ' '",
      },
      { mode: "bwrap" },
    );
    expect(outputs.get("outside")).toContain("READ-FAILED");
    expect(outputs.get("outside")).not.toContain("TOP SECRET");
    expect(outputs.get("outside")).toContain("No such file or directory");
    expect(outputs.get("net")).toContain("NO-NETWORK");
    expect(server.connections()).toBe(0);
    expect(outputs.get("write")).toContain(`pwd=${dirs.projectDir}`);
    expect(outputs.get("write")).toContain("agent");
    expect(await readFile(join(dirs.projectDir, "made-in-sandbox.txt"), "utf8")).toBe("written\n");
    expect(outputs.get("env")).toContain("[]");
    expect(outputs.get("env")).not.toContain("do-not-leak-9876");
    expect(outputs.get("env")?.split("\n").at(-1)?.trim().split(" ")).toEqual([
      "HOME",
      "LANG",
      "PATH",
      "PWD",
      "SHLVL",
      "TERM",
      "TMPDIR",
      "_",
    ]);
    // Own PID namespace: the worker's processes are invisible; pid 1 is bwrap's init, whose
    // command line does not show the sandbox's options (they came through a pipe).
    expect(outputs.get("procs")).toContain("bwrap --args 3 -- /bin/bash -c");
    expect(outputs.get("procs")).not.toContain(dirs.root);
    expect(Number(outputs.get("procs")?.split("\n")[0])).toBeLessThan(10);
  });

  it("the user bash command is sandboxed too, with the session tmp dir as a private /tmp", async () => {
    const dirs = await sessionDirs();
    const outside = join(dirs.root, "org", "secret.txt");
    await writeFile(outside, "TOP SECRET\n");
    const { runtime } = await fauxRuntime();
    const session = await openSession({ runtime, ...dirs, sandbox: { mode: "bwrap" } });
    onCleanup(() => session.dispose());
    const result = await session.command({
      type: "bash",
      command: `cat ${outside} || echo REFUSED; echo "tmp=$TMPDIR"; echo scratch > /tmp/x && cat /tmp/x`,
    });
    const output = (result as { data: { output: string } }).data.output;
    expect(output).toContain("REFUSED");
    expect(output).not.toContain("TOP SECRET");
    expect(output).toContain("tmp=/tmp");
    expect(output).toContain("scratch");
  });

  it("PI_FLEET_SANDBOX_NETWORK=true shares the network", async () => {
    const server = await listener();
    const { outputs } = await runBash(
      { net: `(exec 3<>/dev/tcp/127.0.0.1/${server.port}) && echo CONNECTED || echo NO-NETWORK` },
      { mode: "bwrap", network: true },
    );
    expect(outputs.get("net")).toContain("CONNECTED");
    expect(server.connections()).toBe(1);
  });

  it("passes exit codes and signal deaths through, and enforces the time cap", async () => {
    const project = await tempDir();
    const tmp = await tempDir();
    const ops = createHostBashOperations({
      cwd: project,
      env: minimalBashEnv(project, "/tmp"),
      maxTimeoutMs: 300,
      sandbox: { bwrapPath: "/usr/bin/bwrap", tmpDir: tmp, network: false },
    });
    const run = (command: string) => ops.exec(command, project, { onData: () => {} });
    expect(await run("exit 3")).toEqual({ exitCode: 3 });
    expect(await run("kill -KILL $$")).toEqual({ exitCode: 137 });
    const started = Date.now();
    await expect(run("sleep 5")).rejects.toThrow(/^timeout:/);
    expect(Date.now() - started).toBeLessThan(3000);
  });
});

describe("probeSandbox", () => {
  it("is a no-op for mode none", async () => {
    await expect(probeSandbox({ mode: "none", bwrapPath: "/nonexistent/bwrap" })).resolves.toBeUndefined();
  });

  it("fails clearly when bwrap is missing or cannot create the sandbox", async () => {
    const missing = probeSandbox({ mode: "bwrap", bwrapPath: "/nonexistent/bwrap" });
    await expect(missing).rejects.toBeInstanceOf(SandboxUnavailableError);
    await expect(missing).rejects.toThrow("bubblewrap is not installed at /nonexistent/bwrap");
    // A "bwrap" that fails the way a blocked user namespace does: message on stderr, exit 1.
    const dir = await tempDir();
    const fake = join(dir, "bwrap");
    await writeFile(fake, "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n", {
      mode: 0o755,
    });
    await expect(probeSandbox({ mode: "bwrap", bwrapPath: fake })).rejects.toThrow(
      "bubblewrap cannot create the sandbox: bwrap: No permissions to create new namespace",
    );
  });

  it("builds an argv without shell quoting and with the project at its own path", () => {
    const inv = bwrapInvocation(
      { bwrapPath: "/usr/bin/bwrap", projectDir: "/w/o/p", tmpDir: "/t/s", env: { PATH: "/usr/bin" } },
      "/bin/bash",
      "echo 'a b' $HOME",
    );
    // The options travel through fd 3, so no process listing shows them.
    expect(inv.args).toEqual(["--args", "3", "--", "/bin/bash", "-c", "echo 'a b' $HOME"]);
    expect(inv.fdData[0]).toBe(`${inv.options.join("\0")}\0`);
    const opts = inv.options;
    expect(opts.join(" ")).toContain("--bind /t/s /tmp --bind /w/o/p /w/o/p --remount-ro / --chdir /w/o/p");
    expect(opts).toContain("--unshare-all");
    expect(opts).not.toContain("--share-net");
    expect(opts).toContain("--die-with-parent");
    expect(opts).toContain("--new-session");
    expect(opts).toContain("--clearenv");
    expect(opts.join(" ")).not.toContain("/etc/ssl/private");
    expect(inv.fdData[1]).toContain("agent:x:1000:1000");
  });

  it("also mounts the session temp dir at the worker's os.tmpdir() when that is not /tmp", () => {
    const spec = { bwrapPath: "/usr/bin/bwrap", projectDir: "/w/o/p", tmpDir: "/t/s", env: {} };
    const saved = process.env.TMPDIR;
    try {
      // pi names overflow logs after os.tmpdir() (overflow-logs.ts); Node reads TMPDIR per call.
      process.env.TMPDIR = "/var/spool/worker-tmp";
      expect(bwrapInvocation(spec, "/bin/bash", "true").options.join(" ")).toContain(
        "--bind /t/s /tmp --bind /t/s /var/spool/worker-tmp --bind /w/o/p /w/o/p",
      );
      process.env.TMPDIR = "/tmp";
      expect(bwrapInvocation(spec, "/bin/bash", "true").options.join(" ")).toContain(
        "--bind /t/s /tmp --bind /w/o/p /w/o/p",
      );
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
  });
});
