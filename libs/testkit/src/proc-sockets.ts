/**
 * Which process holds which connection, read from Linux `/proc` (tests and benches of the
 * multi-process gateway): the children of a pid, and how many established TCP connections to a
 * local port each of several processes holds. Off Linux both return empty answers.
 */
import { readdir, readFile, readlink } from "node:fs/promises";

/** Child pids of `pid` (`/proc/<pid>/task/<pid>/children`); [] when unreadable or gone. */
export async function childPids(pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "");
  return text.split(/\s+/).filter(Boolean).map(Number);
}

/**
 * TCP sockets whose local port is `port` (`/proc/net/tcp` and `tcp6`) — established connections,
 * or with `state: "listen"` listening sockets — per process among `pids`: the socket inodes found
 * in each `/proc/<pid>/fd`. A pid that is gone has none.
 */
export async function socketsByPid(
  pids: readonly number[],
  port: number,
  state: "established" | "listen" = "established",
): Promise<Map<number, Set<string>>> {
  const code = state === "listen" ? "0A" : "01";
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const text = await readFile(table, "utf8").catch(() => "");
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // f[1] local address:port, f[3] state (01 = ESTABLISHED, 0A = LISTEN), f[9] inode
      if (f[1]?.endsWith(`:${hexPort}`) && f[3] === code && f[9]) inodes.add(f[9]);
    }
  }
  const found = new Map<number, Set<string>>();
  for (const pid of pids) {
    const own = new Set<string>();
    for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m?.[1] && inodes.has(m[1])) own.add(m[1]);
    }
    found.set(pid, own);
  }
  return found;
}

/** How many sockets {@link socketsByPid} finds per process. */
export async function connectionsByPid(
  pids: readonly number[],
  port: number,
  state: "established" | "listen" = "established",
): Promise<Map<number, number>> {
  const found = await socketsByPid(pids, port, state);
  return new Map([...found].map(([pid, set]) => [pid, set.size]));
}
