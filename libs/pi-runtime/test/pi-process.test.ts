// preparePiProcess sets the env pi reads at runtime.
import { afterEach, describe, expect, it } from "vitest";
import { preparePiProcess } from "../src/index.ts";

const KEYS = ["PI_OFFLINE", "PI_TELEMETRY", "PI_CODING_AGENT_DIR"] as const;
const saved = Object.fromEntries(KEYS.map((k) => [k, process.env[k]]));

afterEach(() => {
  for (const k of KEYS) {
    const v = saved[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

describe("preparePiProcess", () => {
  it("sets offline mode, disables telemetry and points pi at the private agent dir", () => {
    preparePiProcess("/var/lib/pi-fleet/agent");
    expect(process.env.PI_OFFLINE).toBe("1");
    expect(process.env.PI_TELEMETRY).toBe("0");
    expect(process.env.PI_CODING_AGENT_DIR).toBe("/var/lib/pi-fleet/agent");
  });
});
