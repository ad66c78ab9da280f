#!/usr/bin/env node
/**
 * `pifleet`: the command-line client of a pi-fleet gateway. Runs the command line, flushes
 * stdout and stderr, and exits with the command's code (open SSE sockets must not keep it alive).
 */
import { processIo } from "./io.ts";
import { run } from "./program.ts";

function flush(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => stream.write("", () => resolve()));
}

// `pifleet … | head`: a closed stdout ends the command quietly.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const code = await run(process.argv.slice(2), processIo());
await Promise.all([flush(process.stdout), flush(process.stderr)]);
process.exit(code);
