export * from "./connection.ts";
export * from "./keys.ts";
export * from "./lua-script.ts";
