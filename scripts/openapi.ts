// Writes the OpenAPI document generated from the gateway's route schemas to openapi/openapi.json
// (`npm run openapi`), or with `--check` fails when the committed copy differs (CI drift check).
// Builds the app without Redis: route registration only needs the schemas.
import { readFileSync, writeFileSync } from "node:fs";
import { loadEnv } from "@pi-fleet/config";
import { buildApp, type GatewayServices } from "@pi-fleet/gateway";
import { createLogger } from "@pi-fleet/observability";
import { createKeys } from "@pi-fleet/redis";
import "@fastify/swagger";

const target = new URL("../openapi/openapi.json", import.meta.url);
const services = {
  env: loadEnv({}),
  keys: createKeys("pf"),
  state: { draining: false, sseClients: 0 },
} as unknown as GatewayServices;
const app = await buildApp(services, createLogger("openapi", "silent"));
await app.ready();
const document = `${JSON.stringify(app.swagger(), null, 2)}\n`;
await app.close();
if (process.argv.includes("--check")) {
  let committed = "";
  try {
    committed = readFileSync(target, "utf8");
  } catch {
    // missing file counts as drift
  }
  if (committed !== document) {
    process.stderr.write(
      "openapi/openapi.json is out of date: run `npm run openapi` and commit the result\n",
    );
    process.exit(1);
  }
  process.stdout.write("openapi/openapi.json is up to date\n");
} else {
  writeFileSync(target, document);
  process.stdout.write(`wrote ${target.pathname}\n`);
}
