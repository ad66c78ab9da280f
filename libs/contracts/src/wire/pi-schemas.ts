/**
 * pi's wire shapes as JSON Schema, GENERATED from pi's TypeScript typings by
 * `scripts/wire-schema.ts` into `pi-wire-schema.json` (committed; `npm run wire-schema`, and CI
 * fails when it drifts). Contracts never import pi: only the generated JSON is read here.
 */
import { type TUnsafe, Type } from "typebox";
import piWireSchema from "./pi-wire-schema.json" with { type: "json" };

/** A JSON Schema object (plain JSON). */
export type JsonSchema = { [keyword: string]: unknown };

/** A pi AgentMessage as JSON: `role` plus role-specific fields (see the generated schema). */
export interface AgentMessageJson {
  role: string;
  [field: string]: unknown;
}

/** A pi `extension_ui_request` as JSON (see the generated schema). */
export interface ExtensionUiRequestJson {
  type: "extension_ui_request";
  id: string;
  method: string;
  [field: string]: unknown;
}

const DEFS_PREFIX = "#/$defs/";

/** The generated definitions, by name (`AgentMessage`, `AgentSessionEvent`, `ExtensionUiRequest`, …). */
export const PI_WIRE_DEFS: Readonly<Record<string, JsonSchema>> = (
  piWireSchema as unknown as { $defs: Record<string, JsonSchema> }
).$defs;

function isSchema(value: unknown): value is JsonSchema {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Deep copy of `value` with `fn` applied to every object, children first. */
export function mapSchema(value: unknown, fn: (schema: JsonSchema) => JsonSchema): unknown {
  if (Array.isArray(value)) return value.map((v) => mapSchema(v, fn));
  if (!isSchema(value)) return value;
  const out: JsonSchema = {};
  for (const [k, v] of Object.entries(value)) out[k] = mapSchema(v, fn);
  return fn(out);
}

/**
 * `defs[name]` with every `#/$defs/…` reference replaced by a copy of its target: a
 * self-contained schema that can sit anywhere in a route schema (Fastify serializes with it,
 * @fastify/swagger prints it as is). Every object schema gets an explicit
 * `additionalProperties: true` — a no-op for validation, but it makes fast-json-stringify
 * forward fields the schema does not list instead of dropping them. Throws on a recursive type.
 */
export function inlineSchema(defs: Readonly<Record<string, JsonSchema>>, name: string): JsonSchema {
  const expand = (schemaName: string, path: readonly string[]): JsonSchema => {
    if (path.includes(schemaName)) throw new Error(`recursive schema ${[...path, schemaName].join(" > ")}`);
    const def = defs[schemaName];
    if (!def) throw new Error(`unknown schema ${schemaName}`);
    const walk = (value: unknown): unknown => {
      if (Array.isArray(value)) return value.map(walk);
      if (!isSchema(value)) return value;
      const { $ref, ...rest } = value;
      const out: JsonSchema = {};
      if (typeof $ref === "string") {
        if (!$ref.startsWith(DEFS_PREFIX)) throw new Error(`unsupported $ref ${$ref}`);
        Object.assign(out, expand($ref.slice(DEFS_PREFIX.length), [...path, schemaName]));
      }
      for (const [k, v] of Object.entries(rest)) {
        out[k] = k === "properties" && isSchema(v) ? mapProperties(v, walk) : walk(v);
      }
      if (out.type === "object" && out.additionalProperties === undefined) out.additionalProperties = true;
      return out;
    };
    return walk(def) as JsonSchema;
  };
  return expand(name, []);
}

/** `properties` maps names to schemas: walk the schemas, never treat a name as a keyword. */
function mapProperties(properties: JsonSchema, walk: (value: unknown) => unknown): JsonSchema {
  const out: JsonSchema = {};
  for (const [name, schema] of Object.entries(properties)) out[name] = walk(schema);
  return out;
}

/**
 * A pi AgentMessage as the fleet keeps and serves it (history of `GET …/sessions/{id}`), inlined
 * from the generated `PersistedAgentMessage`: user, assistant, toolResult, bashExecution, custom,
 * branchSummary and compactionSummary messages (never `system`).
 */
export const AgentMessageSchema: TUnsafe<AgentMessageJson> = Type.Unsafe<AgentMessageJson>(
  inlineSchema(PI_WIRE_DEFS, "PersistedAgentMessage"),
);

/** A pending pi extension UI request (`extension_ui_request`), inlined from the generated schema. */
export const ExtensionUiRequestSchema: TUnsafe<ExtensionUiRequestJson> = Type.Unsafe<ExtensionUiRequestJson>(
  inlineSchema(PI_WIRE_DEFS, "ExtensionUiRequest"),
);
