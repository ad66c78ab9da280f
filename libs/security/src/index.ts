export * from "./secret-box.ts";
export * from "./workspace-paths.ts";
