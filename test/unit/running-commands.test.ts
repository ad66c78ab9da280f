// RunningCommands (apps/worker/src/running-commands.ts): which commands an org-disable stops. A
// command stopped while its session was opening is never started; a running one is stopped through
// its session; a command that begins after the stop is not affected; only what was stopped counts.
import type { PiSession } from "@pi-fleet/pi-runtime";
import { describe, expect, it } from "vitest";
import { RunningCommands } from "../../apps/worker/src/running-commands.ts";

/** A session stand-in that counts abortCommands() calls. */
function session(): PiSession & { aborts: number } {
  const s = {
    aborts: 0,
    abortCommands() {
      s.aborts++;
      return 0;
    },
  };
  return s as unknown as PiSession & { aborts: number };
}

describe("RunningCommands", () => {
  it("does not start a command stopped while its session opened, and stops only through attached sessions", () => {
    const commands = new RunningCommands();
    const opening = commands.begin("s1", "bash");
    const running = commands.begin("s2", "bash");
    const s2 = session();
    running.attach(s2);
    expect(commands.abortAll()).toBe(2);
    expect(opening.stopped).toBe(true);
    expect(running.stopped).toBe(false);
    expect(s2.aborts).toBe(1);
    // The opening command is refused by its caller, which never attaches it: no abort reaches
    // the session that then opens, where another command may run.
    const later = commands.begin("s1", "bash");
    const s1 = session();
    later.attach(s1);
    expect(later.stopped).toBe(false);
    expect(s1.aborts).toBe(0);
    opening.end();
    running.end();
    later.end();
    expect(commands.size).toBe(0);
  });

  it("counts what it stopped: running bash and compact, and commands not started", () => {
    const commands = new RunningCommands();
    const a = session();
    for (const type of ["get_state", "fork", "bash", "compact"]) commands.begin("s", type).attach(a);
    commands.begin("s", "get_messages");
    expect(commands.abortAll()).toBe(3);
    expect(commands.abortAll()).toBe(0);
    expect(a.aborts).toBe(2);
  });
});
