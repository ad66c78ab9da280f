export * from "./admin.ts";
export * from "./auth.ts";
export * from "./common.ts";
export * from "./health.ts";
export * from "./projects.ts";
export * from "./providers.ts";
export * from "./sessions.ts";
export * from "./ws.ts";
