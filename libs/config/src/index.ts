export * from "./env.ts";
export * from "./litellm.ts";
export * from "./startup.ts";
