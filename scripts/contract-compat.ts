// Checks that our OpenAPI document is a compatible superset of the seed contract
// (API.md: "every path, method, request body and response shape there works unchanged").
// Requests: everything the seed accepts, ours accepts (we may bound sizes and tighten id
// patterns, never require more fields or drop accepted ones). Responses: everything the seed
// promises, ours returns (same required fields, compatible types, no enum values a seed
// client does not know). Run `npm run contract:compat`, or import `compareContracts`.
import { readFileSync } from "node:fs";

type Schema = {
  $ref?: string;
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  enum?: unknown[];
  const?: unknown;
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
  additionalProperties?: boolean | Schema;
};
type Operation = {
  parameters?: { name: string; in: string; required?: boolean; schema?: Schema }[];
  requestBody?: { content?: Record<string, { schema?: Schema }> };
  responses?: Record<string, { content?: Record<string, { schema?: Schema }> }>;
};
/** An OpenAPI document (the parts this check reads). */
export type OpenApiDocument = {
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, Schema> };
};

const METHODS = ["get", "put", "post", "delete", "patch"];

function resolver(doc: OpenApiDocument) {
  return function resolve(schema: Schema | undefined): Schema {
    let s = schema ?? {};
    for (let i = 0; s.$ref && i < 20; i++) {
      const name = s.$ref.replace("#/components/schemas/", "");
      s = doc.components?.schemas?.[name] ?? {};
    }
    // A union of constants (TypeBox's form of an enum) is an enum.
    const alts = s.anyOf ?? s.oneOf;
    if (alts && alts.length > 0 && alts.every((a) => a.const !== undefined && !a.$ref)) {
      const types = [...new Set(alts.flatMap((a) => (a.type === undefined ? [] : [a.type].flat())))];
      return {
        ...s,
        anyOf: undefined,
        oneOf: undefined,
        enum: alts.map((a) => a.const),
        ...(types.length ? { type: types } : {}),
      };
    }
    if (s.allOf && s.allOf.length > 0) {
      const merged: Schema = {
        ...s,
        allOf: undefined,
        properties: { ...s.properties },
        required: [...(s.required ?? [])],
      };
      for (const part of s.allOf) {
        const p = resolve(part);
        Object.assign(merged.properties!, p.properties);
        merged.required!.push(...(p.required ?? []));
        merged.type ??= p.type;
      }
      return merged;
    }
    return s;
  };
}

const typesOf = (s: Schema): string[] | undefined =>
  s.type === undefined ? undefined : Array.isArray(s.type) ? s.type : [s.type];
const valuesOf = (s: Schema): unknown[] | undefined =>
  s.enum ?? (s.const !== undefined ? [s.const] : undefined);
const branches = (s: Schema): Schema[] | undefined => s.anyOf ?? s.oneOf;
const isAny = (s: Schema) =>
  Object.keys(s).filter((k) => !["description", "example", "title"].includes(k)).length === 0;

/** Compares `seed` with `ours`; returns one line per incompatibility (empty = compatible). */
export function compareContracts(seed: OpenApiDocument, ours: OpenApiDocument): string[] {
  const rs = resolver(seed);
  const ro = resolver(ours);
  const problems: string[] = [];

  // Every request valid under `s` (seed) must be valid under `o` (ours).
  function accepts(s0: Schema | undefined, o0: Schema | undefined, at: string): string[] {
    const s = rs(s0);
    const o = ro(o0);
    if (isAny(o)) return [];
    const sb = branches(s);
    if (sb) return sb.flatMap((b, i) => accepts(b, o, `${at}|${i}`));
    const ob = branches(o);
    if (ob) {
      const fits = ob.some((b) => accepts(s, b, at).length === 0);
      return fits ? [] : [`${at}: no variant of ours accepts the seed's request shape`];
    }
    const out: string[] = [];
    const st = typesOf(s);
    const ot = typesOf(o);
    if (ot && st && !st.every((t) => ot.includes(t) || (t === "integer" && ot.includes("number")))) {
      out.push(`${at}: seed sends ${st.join("|")}, ours accepts ${ot.join("|")}`);
    }
    const sv = valuesOf(s);
    const ov = valuesOf(o);
    if (ov && !sv?.every((v) => ov.includes(v))) out.push(`${at}: ours accepts fewer values than the seed`);
    if (s.properties || o.properties) {
      for (const [name, prop] of Object.entries(s.properties ?? {})) {
        const mine = o.properties?.[name];
        if (!mine) {
          if (o.additionalProperties === false) out.push(`${at}.${name}: seed field rejected by ours`);
          continue;
        }
        out.push(...accepts(prop, mine, `${at}.${name}`));
      }
      for (const req of o.required ?? []) {
        if (!(s.required ?? []).includes(req))
          out.push(`${at}.${req}: ours requires a field the seed makes optional`);
      }
    }
    if (s.items || o.items) out.push(...accepts(s.items, o.items, `${at}[]`));
    return out;
  }

  // Every response of ours (`o`) must satisfy what the seed (`s`) promises.
  function satisfies(s0: Schema | undefined, o0: Schema | undefined, at: string): string[] {
    const s = rs(s0);
    const o = ro(o0);
    if (isAny(s)) return [];
    const ob = branches(o);
    if (ob) return ob.flatMap((b, i) => satisfies(s, b, `${at}|${i}`));
    const sb = branches(s);
    if (sb) {
      const fits = sb.some((b) => satisfies(b, o, at).length === 0);
      return fits ? [] : [`${at}: ours matches no variant the seed allows`];
    }
    if (isAny(o)) return [`${at}: ours is untyped where the seed promises a shape`];
    const out: string[] = [];
    const st = typesOf(s);
    const ot = typesOf(o);
    if (st && !ot?.every((t) => st.includes(t) || (t === "integer" && st.includes("number")))) {
      out.push(`${at}: seed promises ${st.join("|")}, ours returns ${ot?.join("|") ?? "anything"}`);
    }
    const sv = valuesOf(s);
    const ov = valuesOf(o);
    if (sv && !ov?.every((v) => sv.includes(v)))
      out.push(`${at}: ours may return values the seed does not list`);
    for (const [name, prop] of Object.entries(s.properties ?? {})) {
      const mine = o.properties?.[name];
      if (!mine) {
        out.push(`${at}.${name}: seed field missing from ours`);
        continue;
      }
      if ((s.required ?? []).includes(name) && !(o.required ?? []).includes(name)) {
        out.push(`${at}.${name}: required by the seed, optional in ours`);
      }
      out.push(...satisfies(prop, mine, `${at}.${name}`));
    }
    if (s.items) out.push(...satisfies(s.items, o.items, `${at}[]`));
    return out;
  }

  for (const [path, ops] of Object.entries(seed.paths)) {
    for (const method of METHODS) {
      const sop = ops[method];
      if (!sop) continue;
      const where = `${method.toUpperCase()} ${path}`;
      const oop = ours.paths[path]?.[method];
      if (!oop) {
        problems.push(`${where}: missing`);
        continue;
      }
      for (const p of sop.parameters ?? []) {
        const mine = (oop.parameters ?? []).find((q) => q.name === p.name && q.in === p.in);
        if (!mine && (p.in === "path" || p.required))
          problems.push(`${where}: parameter ${p.in} ${p.name} missing`);
        if (mine?.required && !p.required)
          problems.push(`${where}: parameter ${p.name} required by ours only`);
      }
      for (const q of oop.parameters ?? []) {
        const known = (sop.parameters ?? []).some((p) => p.name === q.name && p.in === q.in);
        if (q.required && !known)
          problems.push(`${where}: ours requires an extra parameter ${q.in} ${q.name}`);
      }
      const sBody = sop.requestBody?.content?.["application/json"]?.schema;
      const oBody = oop.requestBody?.content?.["application/json"]?.schema;
      if (sBody) {
        if (!oBody) problems.push(`${where}: request body not declared`);
        else problems.push(...accepts(sBody, oBody, `${where} body`));
      }
      for (const [status, res] of Object.entries(sop.responses ?? {})) {
        const sSchema = res.content?.["application/json"]?.schema;
        if (!sSchema || !status.startsWith("2")) continue;
        const oSchema = oop.responses?.[status]?.content?.["application/json"]?.schema;
        if (!oSchema) {
          problems.push(`${where}: ${status} response not declared`);
          continue;
        }
        problems.push(...satisfies(sSchema, oSchema, `${where} ${status}`));
      }
    }
  }
  return problems;
}

/** Loads a JSON document. */
export function loadDocument(path: string | URL): OpenApiDocument {
  return JSON.parse(readFileSync(path, "utf8")) as OpenApiDocument;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const seed = loadDocument(
    process.argv[2] ?? new URL("../../shared/reference/seed-agent-server-openapi.json", import.meta.url),
  );
  const ours = loadDocument(process.argv[3] ?? new URL("../openapi/openapi.json", import.meta.url));
  const problems = compareContracts(seed, ours);
  for (const p of problems) process.stdout.write(`${p}\n`);
  process.stdout.write(
    problems.length === 0 ? "compatible with the seed contract\n" : `${problems.length} incompatibilities\n`,
  );
  process.exit(problems.length === 0 ? 0 : 1);
}
