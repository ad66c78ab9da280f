export * from "./cluster-metrics.ts";
export * from "./log-context.ts";
export * from "./logger.ts";
export * from "./metrics.ts";
export * from "./shutdown.ts";
