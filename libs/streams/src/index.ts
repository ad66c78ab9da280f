export * from "./event-log.ts";
export * from "./offsets.ts";
export * from "./session-records.ts";
export * from "./stream-hub.ts";
export * from "./stream-subscription.ts";
