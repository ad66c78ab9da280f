export * from "./project-lease.ts";
export * from "./run-quota.ts";
