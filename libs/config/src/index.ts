export * from "./env.ts";
export * from "./startup.ts";
