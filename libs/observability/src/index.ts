export * from "./logger.ts";
export * from "./shutdown.ts";
