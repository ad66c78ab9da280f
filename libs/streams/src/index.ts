export * from "./event-log.ts";
export * from "./offsets.ts";
export * from "./session-subscription.ts";
export * from "./stream-hub.ts";
