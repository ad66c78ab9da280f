// Log lines never carry secrets: the redacted paths of @pi-fleet/observability's logger, including
// the arguments of a failed Redis command that ioredis attaches to its errors.
import { Writable } from "node:stream";
import { createLogger } from "@pi-fleet/observability";
import { ReplyError } from "ioredis";
import { describe, expect, it } from "vitest";

function capture(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { lines, stream };
}

describe("logger redaction", () => {
  it("censors keys, tokens, auth headers and a failed Redis command's arguments", () => {
    const { lines, stream } = capture();
    const log = createLogger("test", "info", stream);
    const err = Object.assign(new ReplyError("WRONGTYPE Operation against a key"), {
      command: { name: "hset", args: ["pf:secrets:acme", "openai", "sk-live-do-not-log"] },
    });
    log.error({ err }, "redis failed");
    log.info({
      provider: { apiKey: "sk-provider-do-not-log" },
      headers: { authorization: "Bearer pf-do-not-log" },
    });
    const out = lines.join("");
    expect(out).toContain("WRONGTYPE Operation against a key");
    expect(out).toContain('"name":"hset"');
    for (const secret of ["sk-live-do-not-log", "sk-provider-do-not-log", "pf-do-not-log"]) {
      expect(out).not.toContain(secret);
    }
  });
});
