/**
 * The published wire-event schema: every event on a session stream (SSE `GET …/sessions/{id}/events`,
 * `/v1/ws` `event` frames) is a `WireEvent` — a pi AgentSessionEvent in lean form, an
 * `extension_ui_request` / `extension_error` (pi's shapes, generated from pi's typings), or a
 * fleet event (ours, TypeBox). Project activity streams carry `ActivityEvent`s.
 *
 * Three forms of the same definitions:
 * - {@link WIRE_SCHEMA_DEFS}: named JSON Schemas referencing each other as `#/$defs/<name>`;
 * - {@link wireSchemaDocument} / {@link WireEventSchema}: a standalone JSON Schema 2020-12
 *   document (validators: ajv, TypeBox `Compile`);
 * - {@link wireSchemaComponents}: the same definitions for OpenAPI `components.schemas`.
 */
import { type TUnsafe, Type } from "typebox";
import type { WireEvent } from "../wire-events.ts";
import { ACTIVITY_EVENTS, FLEET_EVENTS } from "./fleet-events.ts";
import { type JsonSchema, mapSchema, PI_WIRE_DEFS } from "./pi-schemas.ts";

export * from "./fleet-events.ts";
export {
  type AgentMessageJson,
  AgentMessageSchema,
  type ExtensionUiRequestJson,
  ExtensionUiRequestSchema,
  inlineSchema,
  type JsonSchema,
  PI_WIRE_DEFS,
} from "./pi-schemas.ts";

const ref = (name: string): JsonSchema => ({ $ref: `#/$defs/${name}` });
const plain = (schema: unknown): JsonSchema => JSON.parse(JSON.stringify(schema)) as JsonSchema;

function buildDefs(): Record<string, JsonSchema> {
  const defs: Record<string, JsonSchema> = { ...PI_WIRE_DEFS };
  const add = (name: string, schema: JsonSchema): void => {
    if (defs[name]) throw new Error(`wire schema ${name} is defined twice`);
    defs[name] = schema;
  };
  for (const [name, schema] of Object.entries(FLEET_EVENTS)) add(name, plain(schema));
  for (const [name, schema] of Object.entries(ACTIVITY_EVENTS)) add(name, plain(schema));
  add("FleetEvent", {
    description: "An event pi-fleet adds to a session stream: the run lifecycle and stream control.",
    anyOf: Object.keys(FLEET_EVENTS).map(ref),
  });
  add("WireEvent", {
    description:
      "Every event on a session stream (SSE `data:` lines of `GET …/sessions/{id}/events`, `event` of `/v1/ws` frames): a pi AgentSessionEvent in lean form (`message_update` without the message snapshot), a pi extension UI request or error, or a fleet event.",
    anyOf: [
      ref("AgentSessionEvent"),
      ref("ExtensionUiRequest"),
      ref("ExtensionErrorEvent"),
      ref("FleetEvent"),
    ],
  });
  add("ActivityEvent", {
    description:
      "Every event on a project activity stream (`GET /v1/projects/{projectId}/events`, `/v1/ws` subscriptions without `sessionId`).",
    anyOf: [
      ...Object.keys(ACTIVITY_EVENTS),
      "StreamResetEvent",
      "StreamLaggingEvent",
      "StreamEndedEvent",
    ].map(ref),
  });
  mapSchema(defs, (s) => {
    const target = typeof s.$ref === "string" ? s.$ref.slice("#/$defs/".length) : undefined;
    if (target !== undefined && !defs[target]) throw new Error(`wire schema reference ${s.$ref} is dangling`);
    return s;
  });
  return defs;
}

/** Every wire schema by name; references are `#/$defs/<name>`. */
export const WIRE_SCHEMA_DEFS: Readonly<Record<string, JsonSchema>> = buildDefs();

/** A standalone JSON Schema 2020-12 document validating `root` (default `WireEvent`). */
export function wireSchemaDocument(root = "WireEvent"): JsonSchema {
  if (!WIRE_SCHEMA_DEFS[root]) throw new Error(`unknown wire schema ${root}`);
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    $ref: `#/$defs/${root}`,
    $defs: WIRE_SCHEMA_DEFS,
  };
}

/**
 * The wire schemas for OpenAPI `components.schemas` (references rewritten to
 * `#/components/schemas/<name>`), e.g. `@fastify/swagger`'s `openapi.components.schemas`.
 */
export function wireSchemaComponents(): Record<string, JsonSchema> {
  return mapSchema(WIRE_SCHEMA_DEFS, (s) =>
    typeof s.$ref === "string" && s.$ref.startsWith("#/$defs/")
      ? { ...s, $ref: `#/components/schemas/${s.$ref.slice("#/$defs/".length)}` }
      : s,
  ) as Record<string, JsonSchema>;
}

/**
 * Every event on a session stream, as a standalone document ({@link wireSchemaDocument}): compile
 * it on its own (ajv 2020, TypeBox `Compile`); to embed it in a route schema use
 * `inlineSchema(WIRE_SCHEMA_DEFS, "WireEvent")` or reference the OpenAPI component.
 */
export const WireEventSchema: TUnsafe<WireEvent> = Type.Unsafe<WireEvent>(wireSchemaDocument("WireEvent"));

/** Every event on a project activity stream, as a standalone document. */
export const ActivityEventSchema: TUnsafe<WireEvent> = Type.Unsafe<WireEvent>(
  wireSchemaDocument("ActivityEvent"),
);
