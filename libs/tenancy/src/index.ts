export * from "./api-key-secret.ts";
export * from "./api-key-store.ts";
export * from "./audit-log.ts";
export * from "./org-store.ts";
