export * from "./workspace-paths.ts";
