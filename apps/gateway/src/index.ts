export { buildApp } from "./app.ts";
export { assertLoopback, type Gateway, startGateway } from "./gateway.ts";
export type { GatewayServices } from "./services.ts";
