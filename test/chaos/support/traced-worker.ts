// Diagnostic worker entry (not used by default): the real worker (apps/worker/src/main.ts) with
// `TRACE <ms> start|end <step> <project>` lines on stderr around the shutdown steps of a project
// runner (BullMQ Worker pause/close/main loop/blocking connection, Queue.close, session host,
// lease release). Use it to see where a ProjectRunner.close() hangs:
//   CHAOS_WORKER_ENTRY=test/chaos/support/traced-worker.ts npx vitest run --project chaos …
// (a failing test saves every process log under <tmp>/pi-fleet-chaos-logs/<prefix>/).
import { Queue, Worker } from "bullmq";
import { ProjectRunner } from "../../../apps/worker/src/project-runner.ts";
import { RunExecutor } from "../../../apps/worker/src/run-executor.ts";
import { SessionHost } from "../../../apps/worker/src/session-host.ts";
import { ProjectLease } from "../../../libs/leases/src/index.ts";

type Fn = (...args: unknown[]) => Promise<unknown>;
function wrap(proto: object, name: string, label: string): void {
  const p = proto as Record<string, Fn>;
  const orig = p[name]!;
  p[name] = async function (this: { name?: string; project?: string }, ...args: unknown[]) {
    const who = this.project ?? this.name ?? "?";
    const t = Date.now();
    process.stderr.write(`TRACE ${t} start ${label} ${who}\n`);
    try {
      return await orig.apply(this, args);
    } finally {
      process.stderr.write(`TRACE ${Date.now()} end ${label} ${who} ${Date.now() - t}ms\n`);
    }
  };
}
wrap(Worker.prototype, "pause", "Worker.pause");
wrap(Worker.prototype, "close", "Worker.close");
wrap(Worker.prototype, "whenCurrentJobsFinished", "Worker.whenCurrentJobsFinished");
wrap(Worker.prototype, "mainLoop", "Worker.mainLoop");
{
  const p = Worker.prototype as unknown as Record<string, Fn>;
  const orig = p.whenCurrentJobsFinished!;
  p.whenCurrentJobsFinished = async function (
    this: { name?: string; backend?: Record<string, Fn>; mainLoopRunning?: unknown },
    ...args: unknown[]
  ) {
    const b = this.backend;
    if (b && !("__traced" in b)) {
      Object.assign(b, { __traced: true });
      for (const m of ["disconnectBlocking", "reconnectBlocking"]) {
        const f = b[m]!.bind(b);
        b[m] = async (...a: unknown[]) => {
          process.stderr.write(`TRACE ${Date.now()} start backend.${m} ${this.name}\n`);
          try {
            return await f(...a);
          } finally {
            process.stderr.write(`TRACE ${Date.now()} end backend.${m} ${this.name}\n`);
          }
        };
      }
    }
    process.stderr.write(
      `TRACE ${Date.now()} mainLoopRunning=${this.mainLoopRunning ? "yes" : "no"} ${this.name}\n`,
    );
    return orig.apply(this, args);
  };
}
wrap(Queue.prototype, "close", "Queue.close");
wrap(ProjectRunner.prototype, "close", "ProjectRunner.close");
wrap(RunExecutor.prototype, "abortAll", "RunExecutor.abortAll");
wrap(SessionHost.prototype, "close", "SessionHost.close");
wrap(ProjectLease.prototype, "release", "ProjectLease.release");
await import("../../../apps/worker/src/main.ts");
