export * from "./jobs.ts";
export * from "./run-producer.ts";
