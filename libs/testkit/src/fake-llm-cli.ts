// Runnable entry for the fake LLM, for local runs and benches that need a model endpoint outside
// a test process: `node --conditions=@pi-fleet/source libs/testkit/src/fake-llm-cli.ts`.
// Env: FAKE_LLM_PORT (default 4011), FAKE_LLM_HOST (default 127.0.0.1). Stops on SIGINT/SIGTERM.

import { startFakeLlm } from "./fake-llm.ts";

const port = Number.parseInt(process.env.FAKE_LLM_PORT ?? "4011", 10);
const host = process.env.FAKE_LLM_HOST ?? "127.0.0.1";
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`FAKE_LLM_PORT must be an integer 0..65535, got ${process.env.FAKE_LLM_PORT}\n`);
  process.exit(2);
}

const llm = await startFakeLlm({ port, host });
process.stdout.write(`fake LLM listening on ${llm.url} (OpenAI-compatible base URL: ${llm.baseUrl})\n`);

let stopping = false;
const shutdown = (): void => {
  if (stopping) return;
  stopping = true;
  llm.close().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`fake LLM close failed: ${String(err)}\n`);
      process.exit(1);
    },
  );
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
