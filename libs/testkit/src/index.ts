// Public surface of @pi-fleet/testkit: fakes, process helpers and utilities that only tests and
// benches import (biome forbids importing it from libs and apps).

import "./provided-context.ts";

export {
  FAKE_MODEL_ID,
  type FakeLlm,
  type FakeLlmOptions,
  type RecordedRequest,
  startFakeLlm,
} from "./fake-llm.ts";
export {
  type ChatContentPart,
  type ChatMessage,
  type ChatRequestBody,
  type Directive,
  lastUserText,
  messageText,
  type PlannedToolCall,
  parseDirectives,
  planReply,
  type ReplyPlan,
  splitPieces,
} from "./fake-llm-script.ts";
export { findFreePort } from "./free-port.ts";
export { childPids, connectionsByPid, socketsByPid } from "./proc-sockets.ts";
export { pingRedis, waitForRedisPing } from "./redis-ping.ts";
export {
  findRedisServerBinary,
  type SpawnedRedis,
  type SpawnRedisOptions,
  spawnRedis,
} from "./redis-server.ts";
export { type OpenSseOptions, openSse, type SseConnection, type SseEvent } from "./sse-client.ts";
export { uniquePrefix } from "./test-prefix.ts";
export { type WaitForOptions, waitFor } from "./wait-for.ts";
