// Types for values that vitest globalSetup modules in this testkit `provide()` to tests, so that
// `inject("redisUrl")` is typed wherever @pi-fleet/testkit (or the setup module) is imported.

declare module "vitest" {
  export interface ProvidedContext {
    /** `redis://host:port` of the Redis provided by redis-global-setup for this test run. */
    redisUrl: string;
  }
}

export {};
