// Generates libs/contracts/src/wire/pi-wire-schema.json (`npm run wire-schema`): the JSON Schema
// (draft 2020-12, usable as-is in OpenAPI 3.1) of the pi shapes that cross pi-fleet's wire,
// generated with ts-json-schema-generator from pi's own TypeScript typings. With `--check` it
// fails when the committed file differs (CI drift check, like `openapi --check`).
//
// The types below are the generator's input. They only SELECT and NARROW pi's types (nothing is
// restated by hand), and `WireTypeChecks` makes tsc prove they still match pi after an upgrade.
// This file is type-checked by `tsc -b` (test/tsconfig.json includes scripts/) and imports pi
// with `import type` only: no pi code is loaded here, and libs/contracts never imports pi.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { AgentMessage as PiAgentMessage } from "@earendil-works/pi-agent-core";
import type { AssistantMessage, AssistantMessageEvent, StopReason } from "@earendil-works/pi-ai";
import type {
  BranchSummaryEntry,
  ExtensionError,
  JsonAgentSessionEvent,
  AgentSessionEvent as PiAgentSessionEvent,
  RpcExtensionUIRequest,
} from "@earendil-works/pi-coding-agent";
import {
  AnyType,
  type BaseType,
  type Context,
  createFormatter,
  createParser,
  DEFAULT_CONFIG,
  LiteralType,
  type NodeParser,
  SchemaGenerator,
  type SubNodeParser,
  UnionType,
} from "ts-json-schema-generator";
import ts from "typescript";

// ---------------------------------------------------------------------------------------------
// The published types (generator input)
// ---------------------------------------------------------------------------------------------

/**
 * An assistant message once it is complete (`message_end`, history): pi marks in-flight
 * messages `pending`, and `deferred` only exists with deferred provider requests, which the fleet
 * never makes.
 */
export type PersistedAssistantMessage = {
  [K in keyof AssistantMessage]: K extends "stopReason"
    ? Exclude<StopReason, "pending" | "deferred">
    : AssistantMessage[K];
};

type PiBranchSummaryMessage = Extract<PiAgentMessage, { role: "branchSummary" }>;

/**
 * A branch summary in a coding-agent session: pi-coding-agent builds it from a
 * `BranchSummaryEntry`, whose `fromId` is always set.
 */
export type PersistedBranchSummaryMessage = {
  [K in keyof PiBranchSummaryMessage]: K extends "fromId"
    ? BranchSummaryEntry["fromId"]
    : PiBranchSummaryMessage[K];
};

/**
 * A pi AgentMessage as the fleet keeps and serves it (`GET …/sessions/{id}`): every role except
 * `system` (never shown), in its completed form.
 */
export type PersistedAgentMessage =
  | Exclude<PiAgentMessage, { role: "system" } | { role: "assistant" } | { role: "branchSummary" }>
  | PersistedAssistantMessage
  | PersistedBranchSummaryMessage;

type AssistantEventType = AssistantMessageEvent["type"];
type LeanOf<K extends AssistantEventType> = Omit<Extract<AssistantMessageEvent, { type: K }>, "partial">;
type OtherEventType = Exclude<AssistantEventType, "toolcall_start">;

/**
 * pi's AssistantMessageEvent in the lean wire form (pi's own JSON/RPC form): no `partial`
 * snapshot; `toolcall_start` names the tool call.
 */
export type LeanAssistantMessageEvent =
  | { [K in OtherEventType]: LeanOf<K> }[OtherEventType]
  | (LeanOf<"toolcall_start"> & { id: string; toolName: string });

/** `message_update` in the lean wire form: the message snapshot and pi's per-update usage are dropped. */
export type LeanMessageUpdateEvent = {
  type: "message_update";
  assistantMessageEvent: LeanAssistantMessageEvent;
};

/** Every pi AgentSessionEvent as it crosses the wire (`toWireEvent` of @pi-fleet/pi-runtime). */
export type AgentSessionEvent =
  | Exclude<PiAgentSessionEvent, { type: "message_update" }>
  | LeanMessageUpdateEvent;

/** Emitted when an extension needs user input (pi's RPC `extension_ui_request`). */
export type ExtensionUiRequest = RpcExtensionUIRequest;

/** Emitted when a pi extension handler throws (pi's RPC `extension_error`). */
export type ExtensionErrorEvent = { type: "extension_error" } & ExtensionError;

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Assert<T extends true> = T;
type PiJsonMessageUpdate = Extract<JsonAgentSessionEvent, { type: "message_update" }>;

/** Compile-time proofs that the selections above still match pi (tsc fails otherwise). */
export type WireTypeChecks = [
  Assert<Same<LeanAssistantMessageEvent, PiJsonMessageUpdate["assistantMessageEvent"]>>,
  Assert<Same<LeanMessageUpdateEvent, Omit<PiJsonMessageUpdate, "usage">>>,
  Assert<Same<PersistedAgentMessage["role"], Exclude<PiAgentMessage["role"], "system">>>,
  Assert<PersistedAgentMessage extends PiAgentMessage ? true : false>,
];

/** The root types, by the name their definition gets in the generated `$defs`. */
const ROOTS = [
  "PersistedAgentMessage",
  "AgentSessionEvent",
  "ExtensionUiRequest",
  "ExtensionErrorEvent",
] as const;

// ---------------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------------

/** Where the generated schema is committed. */
export const WIRE_SCHEMA_FILE = fileURLToPath(
  new URL("../libs/contracts/src/wire/pi-wire-schema.json", import.meta.url),
);

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

function declaredName(checker: ts.TypeChecker, name: ts.EntityName): string | undefined {
  let symbol = checker.getSymbolAtLocation(name);
  if (symbol && symbol.flags & ts.SymbolFlags.Alias) symbol = checker.getAliasedSymbol(symbol);
  return symbol?.name;
}

/**
 * Teaches the generator three pi constructs it cannot evaluate by itself:
 * - pi-ai's `IsJsonCompatible<T>` (a type-level JSON check guarding `ToolResultMessage`) is true
 *   for everything that can reach the wire, which is JSON;
 * - pi-ai's `JsonRepresentation<T>` (the JSON form of a value) is any JSON value;
 * - `CustomAgentMessages[keyof CustomAgentMessages]` is filled by declaration merging (pi-agent-core
 *   and pi-coding-agent add bashExecution, custom, branchSummary, compactionSummary): its members
 *   are taken from the type checker instead of the (empty) first declaration.
 */
class PiTypeParser implements SubNodeParser {
  private readonly checker: ts.TypeChecker;
  private readonly child: NodeParser;

  constructor(checker: ts.TypeChecker, child: NodeParser) {
    this.checker = checker;
    this.child = child;
  }

  supportsNode(node: ts.Node): boolean {
    if (ts.isTypeReferenceNode(node)) {
      const name = declaredName(this.checker, node.typeName);
      return name === "IsJsonCompatible" || name === "JsonRepresentation";
    }
    return (
      ts.isIndexedAccessTypeNode(node) &&
      ts.isTypeReferenceNode(node.objectType) &&
      declaredName(this.checker, node.objectType.typeName) === "CustomAgentMessages"
    );
  }

  createType(node: ts.Node, context: Context): BaseType {
    if (ts.isTypeReferenceNode(node)) {
      return declaredName(this.checker, node.typeName) === "IsJsonCompatible"
        ? new LiteralType(true)
        : new AnyType();
    }
    const type = this.checker.getTypeFromTypeNode(node as ts.TypeNode);
    const members = type.isUnion() ? type.types : [type];
    return new UnionType(
      members.map((member) => {
        const declaration = (member.aliasSymbol ?? member.getSymbol())?.declarations?.[0];
        if (!declaration) throw new Error("a CustomAgentMessages member has no declaration");
        return this.child.createType(declaration, context);
      }),
    );
  }
}

function isNodeParser(parser: object): parser is NodeParser {
  return typeof (parser as Partial<NodeParser>).createType === "function";
}

/** Runs ts-json-schema-generator on this file; returns its draft-07 `definitions`. */
function generate(): Record<string, JsonObject> {
  const self = fileURLToPath(import.meta.url);
  const parsed = ts.getParsedCommandLineOfConfigFile(
    fileURLToPath(new URL("../tsconfig.base.json", import.meta.url)),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n"));
      },
    },
  );
  if (!parsed) throw new Error("cannot read tsconfig.base.json");
  const program = ts.createProgram([self], {
    ...parsed.options,
    noEmit: true,
    composite: false,
    declaration: false,
    declarationMap: false,
  });
  const config = {
    ...DEFAULT_CONFIG,
    path: self,
    // pi's objects are open (pi adds fields between releases): no `additionalProperties: false`.
    additionalProperties: true,
    // tsc -b type-checks this file; the generator need not do it again.
    skipTypeCheck: true,
    expose: "export" as const,
    jsDoc: "extended" as const,
    sortProps: false,
  };
  const checker = program.getTypeChecker();
  const parser = createParser(program, config, (chain) => {
    // The chain handed to augmentors is the generator's root parser (a ChainNodeParser).
    if (!isNodeParser(chain)) throw new Error("ts-json-schema-generator: unexpected parser chain");
    chain.addNodeParser(new PiTypeParser(checker, chain));
  });
  const generator = new SchemaGenerator(program, parser, createFormatter(config), config);
  const schema = generator.createSchema([...ROOTS]) as unknown as {
    definitions?: Record<string, JsonObject>;
  };
  if (!schema.definitions) throw new Error("the generator produced no definitions");
  return schema.definitions;
}

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Applies `fn` to every object in `value`, children first; `fn` may replace the object. */
function mapObjects(value: Json, fn: (o: JsonObject) => JsonObject): Json {
  if (Array.isArray(value)) return value.map((v) => mapObjects(v, fn));
  if (!isObject(value)) return value;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value)) out[k] = mapObjects(v, fn);
  return fn(out);
}

const DEF_PREFIX = "#/definitions/";

/**
 * Turns the generator's output into the committed document: `$defs` (2020-12) instead of
 * `definitions`; root aliases (`ExtensionUiRequest = RpcExtensionUIRequest`) take their target's
 * place; nested `anyOf`s are flattened (dropping the inner one's description); the recursive `JsonValue` becomes "any JSON value" (the
 * wire is JSON, so nothing is lost, and the schema can be inlined); stray
 * `additionalProperties: false` are dropped (pi objects are open); `type: [a, b]` becomes
 * `anyOf: [{type: a}, {type: b}]`, the form the seed contract uses.
 */
function postProcess(definitions: Record<string, JsonObject>, piVersion: string): JsonObject {
  const defs: Record<string, JsonObject> = { ...definitions };
  const renamed = new Map<string, string>();
  for (const root of ROOTS) {
    const def = defs[root];
    const ref = def?.$ref;
    if (!def || typeof ref !== "string" || Object.keys(def).some((k) => k !== "$ref" && k !== "description"))
      continue;
    const target = decodeURIComponent(ref.slice(DEF_PREFIX.length));
    const targetDef = defs[target];
    if (!targetDef) throw new Error(`dangling alias ${root} -> ${target}`);
    defs[root] = { ...targetDef, ...(def.description === undefined ? {} : { description: def.description }) };
    delete defs[target];
    renamed.set(target, root);
  }
  defs.JsonValue = { description: "Any JSON value." };
  const rewritten = mapObjects(defs, (o) => {
    const out: JsonObject = { ...o };
    if (typeof out.$ref === "string") {
      if (!out.$ref.startsWith(DEF_PREFIX)) throw new Error(`unexpected $ref ${out.$ref}`);
      const name = decodeURIComponent(out.$ref.slice(DEF_PREFIX.length));
      out.$ref = `#/$defs/${renamed.get(name) ?? name}`;
    }
    if (out.additionalProperties === false) delete out.additionalProperties;
    if (Array.isArray(out.type) && Object.keys(out).every((k) => k === "type" || k === "description")) {
      // `string | number` as a union of single-type schemas, the form the seed contract uses.
      const { type, ...rest } = out;
      return { ...rest, anyOf: type.map((t) => ({ type: t })) };
    }
    if (Array.isArray(out.anyOf)) {
      out.anyOf = out.anyOf.flatMap((branch) =>
        isObject(branch) &&
        Array.isArray(branch.anyOf) &&
        Object.keys(branch).every((k) => k === "anyOf" || k === "description")
          ? branch.anyOf
          : [branch],
      );
    }
    return out;
  }) as Record<string, JsonObject>;
  const sorted: JsonObject = {};
  for (const name of Object.keys(rewritten).sort()) sorted[name] = rewritten[name] ?? {};
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    $comment: `Generated by scripts/wire-schema.ts from the typings of @earendil-works/pi-coding-agent ${piVersion}: do not edit, run \`npm run wire-schema\`.`,
    $defs: sorted,
  };
}

/** The committed text of the schema: generated, post-processed and formatted like Biome does. */
export function buildWireSchemaText(): string {
  const pkg = JSON.parse(
    readFileSync(
      fileURLToPath(new URL("../node_modules/@earendil-works/pi-coding-agent/package.json", import.meta.url)),
      "utf8",
    ),
  ) as { version: string };
  const document = postProcess(generate(), pkg.version);
  const biome = fileURLToPath(new URL("../node_modules/.bin/biome", import.meta.url));
  return execFileSync(biome, ["format", `--stdin-file-path=${WIRE_SCHEMA_FILE}`], {
    input: `${JSON.stringify(document, null, 2)}\n`,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const text = buildWireSchemaText();
  if (process.argv.includes("--check")) {
    let committed = "";
    try {
      committed = readFileSync(WIRE_SCHEMA_FILE, "utf8");
    } catch {
      // missing file counts as drift
    }
    if (committed !== text) {
      process.stderr.write(
        "libs/contracts/src/wire/pi-wire-schema.json is out of date: run `npm run wire-schema` and commit the result\n",
      );
      process.exit(1);
    }
    process.stdout.write("libs/contracts/src/wire/pi-wire-schema.json is up to date\n");
  } else {
    writeFileSync(WIRE_SCHEMA_FILE, text);
    process.stdout.write(`wrote ${WIRE_SCHEMA_FILE} (${text.length} bytes)\n`);
  }
}
