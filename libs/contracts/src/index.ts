export * from "./api/index.ts";
export * from "./errors.ts";
export * from "./ids.ts";
export * from "./text-preview.ts";
export * from "./thinking.ts";
export * from "./wire/index.ts";
export * from "./wire-events.ts";
