import { readFileSync } from "node:fs";
import { fauxAssistantMessage, fauxToolCall } from "@earendil-works/pi-ai";
import { it } from "vitest";
import { openSession } from "../src/index.ts";
import { fauxRuntime, onCleanup, sessionDirs } from "./helpers.ts";

it("scratch", async () => {
  const dirs = await sessionDirs();
  const { runtime, faux } = await fauxRuntime();
  faux.setResponses([
    fauxAssistantMessage(fauxToolCall("bash", { command: "echo hi" }), { stopReason: "toolUse" }),
    fauxAssistantMessage("done"),
  ]);
  const session = await openSession({ runtime, ...dirs });
  onCleanup(() => session.dispose());
  await session.run("hi", {}, () => {});
  const lines = readFileSync(dirs.sessionFile, "utf8").trim().split("\n");
  for (const l of lines) console.log(l.slice(0, 300));
});
