// Runs the agent's shell commands inside bubblewrap (pi-sdk.md hazards H3–H5, conventions §9):
// the project dir is the only writable host path, the session's bash temp dir becomes a private
// /tmp, the rest of the host is reduced to read-only /usr, the /bin and /lib links and a few
// /etc files, and every namespace is unshared (no network unless the operator opts in). The PID
// namespace plus --die-with-parent make every descendant die with the sandbox, `setsid` ones
// included. This file only builds argv; bash-operations.ts spawns it.
import { spawn } from "node:child_process";
import { accessSync, constants as fsConstants, lstatSync, readlinkSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";

/** `none`: bash runs on the host with the minimal env; `bwrap`: inside bubblewrap. */
export type SandboxMode = "none" | "bwrap";

/** Default location of bubblewrap (Debian package `bubblewrap`). */
export const DEFAULT_BWRAP_PATH = "/usr/bin/bwrap";

/** Uid and gid of the sandbox user (mapped onto the worker's own uid and gid). */
export const SANDBOX_UID = 1000;

/** How a session's shell commands (the bash tool and user `bash` commands) run. */
export interface SandboxOptions {
  /** `none` (default): on the host; `bwrap`: inside bubblewrap. */
  mode: SandboxMode;
  /** bwrap only: share the worker's network namespace. Default false: no network at all. */
  network?: boolean;
  /** bwrap only: the bubblewrap binary; default {@link DEFAULT_BWRAP_PATH}. */
  bwrapPath?: string;
}

/** What one sandboxed command needs besides the command itself. */
export interface BwrapCommandSpec {
  /** The bubblewrap binary. */
  bwrapPath: string;
  /** Absolute; mounted read-write at the same path and used as the cwd. */
  projectDir: string;
  /**
   * Absolute host dir mounted read-write as the sandbox's /tmp (the session's bash temp dir), and
   * also at the worker's os.tmpdir() when that is another path: pi names bash overflow logs after
   * it (overflow-logs.ts moves them into this dir).
   */
  tmpDir: string;
  /** The command's complete env (set after `--clearenv`). */
  env: Record<string, string>;
  /** Share the host network; default false. */
  network?: boolean;
}

/**
 * A spawnable bwrap invocation: `file args…`, with `fdData[i]` written to the child's fd 3 + i.
 * The options travel through fd 3 (`--args 3`), so neither host `ps` nor the sandbox's own
 * /proc/1/cmdline shows the mounts, host paths or env; only the command itself is on the argv.
 */
export interface BwrapInvocation {
  file: string;
  /** `["--args", "3", "--", shell, "-c", command]`. */
  args: string[];
  /** Contents bwrap reads from fds 3, 4, …: its NUL-separated options, /etc/passwd, /etc/group. */
  fdData: string[];
  /** The options passed through fd 3 (everything before `--`), for logs and tests. */
  options: string[];
}

/** Thrown when `PI_FLEET_SANDBOX=bwrap` is configured but bubblewrap cannot run here. */
export class SandboxUnavailableError extends Error {
  override readonly name = "SandboxUnavailableError";
}

/**
 * Host /etc entries visible (read-only) inside the sandbox: the dynamic linker cache, Debian's
 * alternatives links, name resolution and TLS roots (used only with network), the time zone.
 * Never /etc/ssl/private, shadow files or anything with credentials: inside the user namespace
 * the worker's own files (root's, when the worker runs as root) belong to the sandbox user.
 */
const ETC_ENTRIES = [
  "alternatives",
  "ld.so.cache",
  "ld.so.conf",
  "ld.so.conf.d",
  "localtime",
  "nsswitch.conf",
  "host.conf",
  "gai.conf",
  "hosts",
  "resolv.conf",
  "protocols",
  "services",
  "ssl/certs",
  "ssl/openssl.cnf",
  "ca-certificates",
  "ca-certificates.conf",
];

/** Top-level library and binary dirs besides /usr (links into /usr on merged-/usr systems). */
const ROOT_LINK_DIRS = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

let rootLinkArgs: string[] | undefined;

/** `--symlink` for each root dir that is a link, `--ro-bind` for a real dir, nothing if absent (cached). */
function rootDirArgs(): string[] {
  if (rootLinkArgs) return rootLinkArgs;
  const args: string[] = [];
  for (const dir of ROOT_LINK_DIRS) {
    try {
      const st = lstatSync(dir);
      if (st.isSymbolicLink()) args.push("--symlink", readlinkSync(dir), dir);
      else if (st.isDirectory()) args.push("--ro-bind", dir, dir);
    } catch {
      // absent on this system
    }
  }
  rootLinkArgs = args;
  return args;
}

/**
 * The bwrap argv for `<shell> -c <command>` (an argv array: no shell quoting anywhere). Mounts,
 * in order: read-only /usr, the root link dirs, the {@link ETC_ENTRIES} that exist, a generated
 * /etc/passwd and /etc/group naming the sandbox user (uid {@link SANDBOX_UID}, home = project
 * dir), a fresh /proc of the PID namespace, a minimal /dev, `tmpDir` as /tmp (and at the worker's
 * os.tmpdir() when that differs), the project dir
 * at its own path; then the root is remounted read-only. `--unshare-all --unshare-user`
 * (`--share-net` when `network`), `--cap-drop ALL`, `--die-with-parent`, `--new-session`,
 * `--clearenv` and the env of `spec`. NUL characters cannot be passed and are dropped.
 */
export function bwrapInvocation(spec: BwrapCommandSpec, shell: string, command: string): BwrapInvocation {
  const uid = String(SANDBOX_UID);
  const args = ["--unshare-all", "--unshare-user"];
  if (spec.network) args.push("--share-net");
  args.push("--uid", uid, "--gid", uid, "--cap-drop", "ALL", "--die-with-parent", "--new-session");
  args.push("--clearenv");
  for (const [name, value] of Object.entries(spec.env)) args.push("--setenv", name, value);
  args.push("--ro-bind", "/usr", "/usr", ...rootDirArgs());
  for (const entry of ETC_ENTRIES) args.push("--ro-bind-try", `/etc/${entry}`, `/etc/${entry}`);
  args.push("--perms", "0444", "--ro-bind-data", "4", "/etc/passwd");
  args.push("--perms", "0444", "--ro-bind-data", "5", "/etc/group");
  args.push("--proc", "/proc", "--dev", "/dev");
  // The temp mounts before the project: a project dir below them (tests) must stay visible.
  args.push("--bind", spec.tmpDir, "/tmp");
  const workerTmp = tmpdir();
  if (workerTmp !== "/tmp" && isAbsolute(workerTmp) && workerTmp !== "/") {
    args.push("--bind", spec.tmpDir, workerTmp);
  }
  args.push("--bind", spec.projectDir, spec.projectDir);
  args.push("--remount-ro", "/", "--chdir", spec.projectDir);
  const passwd = `agent:x:${uid}:${uid}:pi agent:${spec.projectDir}:${shell}\n`;
  const group = `agent:x:${uid}:\n`;
  const options = args.map((a) => a.replaceAll("\0", ""));
  return {
    file: spec.bwrapPath,
    args: ["--args", "3", "--", shell, "-c", command],
    fdData: [`${options.join("\0")}\0`, passwd, group],
    options,
  };
}

/**
 * Checks once (at worker start) that bubblewrap can run the real sandbox here: the binary is
 * executable, and `true` runs inside the same mounts and namespaces the sessions get (in throwaway
 * dirs). A no-op for mode `none`. Rejects with SandboxUnavailableError naming the cause (missing
 * binary, or bwrap's own error, typically user namespaces being unavailable) within `timeoutMs`.
 */
export async function probeSandbox(options: SandboxOptions, timeoutMs = 10_000): Promise<void> {
  if (options.mode !== "bwrap") return;
  const bwrapPath = options.bwrapPath ?? DEFAULT_BWRAP_PATH;
  try {
    accessSync(bwrapPath, fsConstants.X_OK);
  } catch {
    throw new SandboxUnavailableError(
      `bubblewrap is not installed at ${bwrapPath} (Debian/Ubuntu: apt-get install bubblewrap)`,
    );
  }
  const dir = await mkdtemp(join(tmpdir(), "pf-sandbox-probe-"));
  try {
    const projectDir = join(dir, "project");
    const tmpDir = join(dir, "tmp");
    await Promise.all([mkdir(projectDir), mkdir(tmpDir)]);
    const env = { PATH: "/usr/bin:/bin" };
    const network = options.network ?? false;
    await runProbe(
      bwrapInvocation({ bwrapPath, projectDir, tmpDir, env, network }, "/bin/sh", "exit 0"),
      timeoutMs,
    );
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

/** Spawns the probe invocation; resolves on exit code 0, rejects with bwrap's stderr otherwise. */
function runProbe(inv: BwrapInvocation, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const fds = inv.fdData.map(() => "pipe" as const);
    const child = spawn(inv.file, inv.args, { env: {}, stdio: ["ignore", "ignore", "pipe", ...fds] });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    inv.fdData.forEach((data, i) => {
      const pipe = child.stdio[3 + i] as NodeJS.WritableStream & { on(e: "error", f: () => void): void };
      pipe.on("error", () => {});
      pipe.end(data);
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new SandboxUnavailableError(`bubblewrap did not finish a trivial command within ${timeoutMs} ms`),
      );
    }, timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(new SandboxUnavailableError(`cannot start ${inv.file}: ${err.message}`));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve();
      const reason = stderr.trim().split("\n")[0] || `exit ${code ?? signal}`;
      reject(
        new SandboxUnavailableError(
          `bubblewrap cannot create the sandbox: ${reason} (it needs unprivileged user namespaces, or ` +
            "root; in containers allow unshare/clone/mount in seccomp, see README 'Agent confinement')",
        ),
      );
    });
  });
}

/** The sandbox part of a session spec (openSession takes `SessionSpec & SessionSandboxSpec`). */
export interface SessionSandboxSpec {
  /** Where the session's shell commands run; default `{mode: "none"}` (on the host). */
  sandbox?: SandboxOptions;
}
