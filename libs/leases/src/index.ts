export * from "./project-lease.ts";
