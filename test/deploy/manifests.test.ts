import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { describe, it } from "node:test";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { StatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { annConfigSchema } from "../../services/ann/src/config.js";
import { indexerConfigSchema } from "../../services/doc-indexer/src/config.js";
import { encoderConfigSchema } from "../../services/query-encoder/src/config.js";
import { REPO_ROOT } from "../support/paths.js";
import { type K8sObject, kubectlMissing, render } from "./render.js";

/**
 * The rendered kustomize output of every overlay (and the base), validated against the
 * Kubernetes OpenAPI schemas (kubernetes-models) and checked for the invariants the
 * deployment relies on. CRDs (cert-manager, KEDA) get structural checks only.
 */

type Validator = { validate(): void };
const SCHEMAS: Record<string, (o: K8sObject) => Validator> = {
  "v1/Namespace": (o) => new Namespace(o as never),
  "v1/ConfigMap": (o) => new ConfigMap(o as never),
  "v1/Secret": (o) => new Secret(o as never),
  "v1/Service": (o) => new Service(o as never),
  "apps/v1/Deployment": (o) => new Deployment(o as never),
  "apps/v1/StatefulSet": (o) => new StatefulSet(o as never),
  "autoscaling/v2/HorizontalPodAutoscaler": (o) => new HorizontalPodAutoscaler(o as never),
  "policy/v1/PodDisruptionBudget": (o) => new PodDisruptionBudget(o as never),
  "networking.k8s.io/v1/NetworkPolicy": (o) => new NetworkPolicy(o as never),
};
const CRDS = new Set([
  "cert-manager.io/v1/Certificate",
  "keda.sh/v1alpha1/ScaledObject",
  "keda.sh/v1alpha1/TriggerAuthentication",
]);

/** Which config schema each Tandem container is started with. */
const SCHEMA_OF: Record<string, Record<string, unknown>> = {
  "query-encoder": encoderConfigSchema.shape,
  ann: annConfigSchema.shape,
  "doc-indexer": indexerConfigSchema.shape,
  worker: indexerConfigSchema.shape,
};
/** Secrets the operator creates (never rendered from git). */
const OPERATOR_SECRETS = new Set([
  "tandem-redis",
  "tandem-auth-tokens",
  "tandem-token-ann",
  "tandem-token-doc-indexer",
]);

const skip = kubectlMissing();
if (skip) process.stderr.write(`test/deploy: SKIPPING manifest rendering: ${skip}\n`);

const overlays: Record<string, K8sObject[]> = skip
  ? {}
  : {
      base: render("deploy/k8s/base"),
      dev: render("deploy/k8s/overlays/dev"),
      prod: render("deploy/k8s/overlays/prod"),
    };

const key = (o: K8sObject) => `${o.apiVersion}/${o.kind}`;
const find = (objs: K8sObject[], kind: string, name: string) => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind}/${name} is rendered`);
  return o;
};
const workloads = (objs: K8sObject[]) => objs.filter((o) => o.kind === "Deployment" || o.kind === "StatefulSet");
interface Container {
  name: string;
  image: string;
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string } } }[];
  envFrom?: { configMapRef?: { name: string } }[];
  ports?: { name: string; containerPort: number }[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Record<string, unknown> & { capabilities?: { drop?: string[] } };
  readinessProbe?: Record<string, unknown> & { grpc?: { port: number } };
  livenessProbe?: Record<string, unknown> & { grpc?: { port: number } };
  startupProbe?: Record<string, unknown> & { grpc?: { port: number } };
  volumeMounts?: { name: string; mountPath: string }[];
}
const podSpec = (w: K8sObject) => w.spec.template.spec;
const containers = (w: K8sObject): Container[] => podSpec(w).containers;
const allContainers = (w: K8sObject): Container[] => [...(podSpec(w).initContainers ?? []), ...containers(w)];

/** The environment a container sees: its ConfigMaps' data, then its env. */
function envOf(objs: K8sObject[], c: Container): Map<string, string> {
  const vars = new Map<string, string>();
  for (const ref of c.envFrom ?? []) {
    const name = ref.configMapRef?.name;
    if (name) for (const [k, v] of Object.entries(find(objs, "ConfigMap", name).data ?? {})) vars.set(k, v);
  }
  for (const e of c.env ?? []) vars.set(e.name, e.value ?? "<from secret>");
  return vars;
}

for (const [overlay, objs] of Object.entries(overlays)) {
  describe(`deploy/k8s ${overlay}`, () => {
    it("every object validates against its Kubernetes schema (CRDs: known kinds only)", () => {
      for (const o of objs) {
        const make = SCHEMAS[key(o)];
        if (make) assert.doesNotThrow(() => make(o).validate(), `${key(o)} ${o.metadata.name}`);
        else assert.ok(CRDS.has(key(o)), `unexpected kind ${key(o)} (${o.metadata.name}): add a schema or a CRD check`);
      }
      if (overlay !== "base")
        assert.ok(
          objs.every((o) => o.kind === "Namespace" || o.metadata.namespace),
          "namespaced",
        );
    });

    it("pods: non-root, seccomp RuntimeDefault, no service-account token; containers locked down", () => {
      for (const w of workloads(objs)) {
        const ps = podSpec(w);
        assert.equal(ps.securityContext?.runAsNonRoot, true, `${w.metadata.name} runAsNonRoot`);
        assert.ok(ps.securityContext?.runAsUser > 0, `${w.metadata.name} numeric non-root uid`);
        assert.equal(ps.securityContext?.seccompProfile?.type, "RuntimeDefault", `${w.metadata.name} seccomp`);
        assert.equal(ps.automountServiceAccountToken, false, `${w.metadata.name} automountServiceAccountToken`);
        for (const c of allContainers(w)) {
          const where = `${w.metadata.name}/${c.name}`;
          assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${where} allowPrivilegeEscalation`);
          assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${where} readOnlyRootFilesystem`);
          assert.deepEqual(c.securityContext?.capabilities?.drop, ["ALL"], `${where} drops ALL capabilities`);
          for (const r of ["cpu", "memory"]) {
            assert.ok(c.resources?.requests?.[r], `${where} requests ${r}`);
            assert.ok(c.resources?.limits?.[r], `${where} limits ${r}`);
          }
          assert.ok(!/:latest$/.test(c.image), `${where} image not :latest`);
          if (overlay !== "base") assert.match(c.image, /:[\w.-]+$/, `${where} image has a tag`);
        }
      }
    });

    it("Tandem containers: gRPC probes on HEALTH_PORT (workers: /metrics), /tmp writable, env names in the schema", () => {
      for (const w of workloads(objs)) {
        for (const c of containers(w)) {
          const schema = SCHEMA_OF[c.name];
          if (!schema) continue; // redis
          const where = `${w.metadata.name}/${c.name}`;
          const env = envOf(objs, c);
          for (const name of env.keys())
            assert.ok(name in schema, `${where}: ${name} is not a variable of its config schema`);
          assert.ok(
            c.volumeMounts?.some((m) => m.mountPath === "/tmp"),
            `${where} mounts /tmp (tsx cache, read-only root)`,
          );
          for (const p of ["readinessProbe", "livenessProbe", "startupProbe"] as const) {
            if (c.name === "worker" && p === "readinessProbe") continue; // no Service in front of workers
            const probe = c[p];
            assert.ok(probe, `${where} has a ${p}`);
            if (c.name === "worker") assert.ok("httpGet" in probe, `${where} ${p} on /metrics`);
            else assert.equal(probe.grpc?.port, Number(env.get("HEALTH_PORT")), `${where} ${p} is gRPC on HEALTH_PORT`);
          }
          if (c.name !== "worker") {
            assert.equal(env.get("HOST"), "0.0.0.0", `${where} binds all interfaces`);
            const grpcPort = c.ports?.find((p) => p.name === "grpc")?.containerPort;
            assert.equal(grpcPort, Number(env.get("PORT")), `${where} grpc containerPort = PORT`);
            const httpPort = c.ports?.find((p) => p.name === "http")?.containerPort;
            assert.equal(
              httpPort,
              env.has("HTTP_PORT") ? Number(env.get("HTTP_PORT")) : undefined,
              `${where} http = HTTP_PORT`,
            );
          }
          for (const e of c.env ?? []) {
            const secret = e.valueFrom?.secretKeyRef?.name;
            if (secret) {
              const rendered = objs.some((o) => o.kind === "Secret" && o.metadata.name === secret);
              assert.ok(
                rendered || OPERATOR_SECRETS.has(secret),
                `${where}: Secret ${secret} is rendered or documented`,
              );
            }
          }
        }
      }
    });

    it("ann: one-replica StatefulSet, DATA_DIR on a PVC, headless + client Services, long startup for recovery", () => {
      const ann = find(objs, "StatefulSet", "ann");
      assert.equal(ann.spec.replicas, 1, "single writer per data directory");
      assert.equal(ann.spec.serviceName, "ann-headless");
      assert.equal(find(objs, "Service", "ann-headless").spec.clusterIP, "None");
      find(objs, "Service", "ann");
      const c = containers(ann)[0] as Container;
      const dataDir = envOf(objs, c).get("DATA_DIR");
      const claim = ann.spec.volumeClaimTemplates?.[0];
      assert.ok(claim?.spec.resources.requests.storage, "volumeClaimTemplates with a size");
      assert.ok(
        c.volumeMounts?.some((m) => m.name === claim.metadata.name && m.mountPath === dataDir),
        "the claim is mounted at DATA_DIR",
      );
      const startup = c.startupProbe as { periodSeconds: number; failureThreshold: number };
      assert.ok(startup.periodSeconds * startup.failureThreshold >= 600, "startup allows >= 10 min of WAL replay");
      assert.ok(
        ann.spec.template.spec.terminationGracePeriodSeconds * 1000 > Number(envOf(objs, c).get("SHUTDOWN_GRACE_MS")),
      );
    });

    it("query-encoder: HPA on CPU and a PDB; models come from an init container, not the image", () => {
      const hpa = find(objs, "HorizontalPodAutoscaler", "query-encoder");
      assert.equal(hpa.spec.scaleTargetRef.name, "query-encoder");
      assert.equal(hpa.spec.metrics[0].resource.name, "cpu");
      find(objs, "PodDisruptionBudget", "query-encoder");
      const enc = find(objs, "Deployment", "query-encoder");
      const c = containers(enc)[0] as Container;
      const modelDir = envOf(objs, c).get("MODEL_DIR");
      assert.ok(
        c.volumeMounts?.some((m) => m.mountPath === modelDir),
        "MODEL_DIR is a mounted volume",
      );
      assert.ok(podSpec(enc).initContainers?.some((i: Container) => i.image.startsWith("tandem/models")));
      // INTRA_OP_THREADS no larger than the CPU limit: more threads than cores only adds contention.
      assert.ok(Number(envOf(objs, c).get("INTRA_OP_THREADS")) <= Number.parseFloat(c.resources?.limits?.cpu ?? "0"));
    });

    it("query-encoder: the OpenAI-compatible HTTP API is on (HTTP_PORT), a container port and a Service port named http", () => {
      const c = containers(find(objs, "Deployment", "query-encoder"))[0] as Container;
      const env = envOf(objs, c);
      const httpPort = Number(env.get("HTTP_PORT"));
      assert.ok(httpPort > 0, "HTTP_PORT is set (0 would leave /v1/embeddings off)");
      for (const other of ["PORT", "HEALTH_PORT", "METRICS_PORT"])
        assert.notEqual(httpPort, Number(env.get(other)), `HTTP_PORT differs from ${other}`);
      assert.deepEqual(
        c.ports?.find((p) => p.name === "http"),
        { name: "http", containerPort: httpPort },
      );
      const svc = find(objs, "Service", "query-encoder");
      const port = (svc.spec.ports as { name: string; port: number; targetPort: string }[]).find(
        (p) => p.name === "http",
      );
      assert.deepEqual(port && { port: port.port, targetPort: port.targetPort }, {
        port: httpPort,
        targetPort: "http",
      });
    });

    it("doc-indexer worker: GPU request, node selector and toleration where a GPU pool exists", () => {
      const w = find(objs, "Deployment", "doc-indexer-worker");
      const c = containers(w)[0] as Container;
      const gpu = c.resources?.limits?.["nvidia.com/gpu"];
      if (overlay === "dev") {
        assert.equal(gpu, undefined, "dev has no GPU pool");
        assert.equal(envOf(objs, c).get("PROVIDERS"), "cpu");
      } else {
        assert.equal(gpu, "1");
        assert.equal(c.resources?.requests?.["nvidia.com/gpu"], "1");
        assert.ok(podSpec(w).nodeSelector, "nodeSelector on the GPU pool");
        assert.ok(podSpec(w).tolerations?.some((t: { key: string }) => t.key === "nvidia.com/gpu"));
        assert.match(envOf(objs, c).get("PROVIDERS") ?? "", /^cuda/);
        assert.match(c.image, /^tandem\/doc-indexer-cuda/);
      }
      assert.equal(
        envOf(objs, containers(find(objs, "Deployment", "doc-indexer"))[0] as Container).get("RUN_WORKER"),
        "false",
      );
    });

    it("NetworkPolicies: default deny; encoder gRPC only from ann, its HTTP API from clients; ann from clients + indexer; redis only from the indexer", () => {
      const pols = objs.filter((o) => o.kind === "NetworkPolicy");
      const deny = pols.find((p) => p.metadata.name === "default-deny");
      assert.ok(deny && Object.keys(deny.spec.podSelector).length === 0);
      assert.deepEqual(deny.spec.policyTypes, ["Ingress", "Egress"]);
      const sources = (name: string) => {
        const p = pols.find((x) => x.metadata.name === name);
        assert.ok(p, `NetworkPolicy ${name}`);
        return (p.spec.ingress ?? []).flatMap((r: { from?: { podSelector?: { matchLabels?: object } }[] }) =>
          (r.from ?? []).map((f) => JSON.stringify(f.podSelector?.matchLabels ?? {})),
        );
      };
      assert.deepEqual(sources("query-encoder").sort(), [
        JSON.stringify({ "app.kubernetes.io/name": "ann" }),
        JSON.stringify({ "tandem.io/client": "true" }),
      ]);
      // Which caller reaches which encoder port: ann the gRPC PORT only, clients HTTP_PORT only.
      const encEnv = envOf(objs, containers(find(objs, "Deployment", "query-encoder"))[0] as Container);
      const encoderRules = (pols.find((x) => x.metadata.name === "query-encoder")?.spec.ingress ?? []).map(
        (r: { from?: { podSelector?: { matchLabels?: object } }[]; ports?: { port: number }[] }) => ({
          from: (r.from ?? []).map((f) => JSON.stringify(f.podSelector?.matchLabels ?? {})),
          ports: (r.ports ?? []).map((p) => p.port),
        }),
      );
      assert.deepEqual(encoderRules, [
        { from: [JSON.stringify({ "app.kubernetes.io/name": "ann" })], ports: [Number(encEnv.get("PORT"))] },
        { from: [JSON.stringify({ "tandem.io/client": "true" })], ports: [Number(encEnv.get("HTTP_PORT"))] },
      ]);
      assert.deepEqual(
        sources("ann").sort(),
        [
          JSON.stringify({ "app.kubernetes.io/name": "doc-indexer" }),
          JSON.stringify({ "app.kubernetes.io/name": "doc-indexer-worker" }),
          JSON.stringify({ "tandem.io/client": "true" }),
        ].sort(),
      );
      assert.deepEqual(sources("doc-indexer"), [JSON.stringify({ "tandem.io/client": "true" })]);
      assert.deepEqual(sources("doc-indexer-worker"), []);
      if (objs.some((o) => o.kind === "StatefulSet" && o.metadata.name === "redis")) {
        assert.deepEqual(sources("redis").sort(), [
          JSON.stringify({ "app.kubernetes.io/name": "doc-indexer" }),
          JSON.stringify({ "app.kubernetes.io/name": "doc-indexer-worker" }),
        ]);
      }
    });

    it("Services and PDBs select pods that exist, on named ports that exist", () => {
      for (const o of objs.filter((x) => x.kind === "Service" || x.kind === "PodDisruptionBudget")) {
        const sel = o.kind === "Service" ? o.spec.selector : o.spec.selector.matchLabels;
        const pods = workloads(objs).filter((w) =>
          Object.entries(sel as Record<string, string>).every(([k, v]) => w.spec.template.metadata.labels?.[k] === v),
        );
        assert.ok(pods.length > 0, `${o.kind}/${o.metadata.name} selects a workload`);
        if (o.kind === "Service") {
          for (const p of o.spec.ports as { targetPort: string }[]) {
            assert.ok(pods.some((w) => containers(w).some((c) => c.ports?.some((cp) => cp.name === p.targetPort))));
          }
        }
      }
    });

    if (overlay === "prod") {
      it("prod: mTLS, tokens and KEDA wired to variables the services read", () => {
        const byName = (n: string) =>
          envOf(objs, containers(workloads(objs).find((w) => w.metadata.name === n) as K8sObject)[0] as Container);
        for (const n of ["query-encoder", "ann", "doc-indexer"]) {
          const env = byName(n);
          for (const v of ["TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE", "AUTH_TOKENS_FILE"])
            assert.ok(env.get(v), `${n} ${v}`);
        }
        assert.ok(byName("ann").get("ENCODER_TLS_CA_FILE"));
        // The encoder's HTTP server reads the gRPC server's TLS files: HTTPS + mTLS on HTTP_PORT, from the
        // same mounted Secret (a path outside every mount would fail its start).
        const enc = containers(find(objs, "Deployment", "query-encoder"))[0] as Container;
        const encEnv = envOf(objs, enc);
        assert.ok(Number(encEnv.get("HTTP_PORT")) > 0, "prod serves /v1/embeddings");
        for (const v of ["TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE"]) {
          const file = encEnv.get(v) ?? "";
          const mount = enc.volumeMounts?.find((m) => file.startsWith(`${m.mountPath}/`));
          assert.ok(mount, `query-encoder ${v} (${file}) lies on a mounted volume`);
          const volume = podSpec(find(objs, "Deployment", "query-encoder")).volumes?.find(
            (x: { name: string }) => x.name === mount.name,
          );
          assert.equal(
            volume?.secret?.secretName,
            "tandem-query-encoder-tls",
            `${v} comes from the encoder's certificate`,
          );
        }
        assert.ok(byName("doc-indexer").get("ANN_TLS_CA_FILE"));
        assert.ok(byName("doc-indexer-worker").get("ANN_TLS_CA_FILE"));
        assert.ok(byName("doc-indexer-worker").get("AUTH_TOKEN_FILE"));
        for (const n of ["doc-indexer", "doc-indexer-worker"]) {
          assert.equal(byName(n).get("REQUIRE_DURABLE_QUEUE"), "true", `${n} refuses a Redis without AOF`);
        }
        const so = find(objs, "ScaledObject", "doc-indexer-worker");
        assert.equal(so.spec.scaleTargetRef.name, "doc-indexer-worker");
        const queuePrefix = byName("doc-indexer-worker").get("QUEUE_PREFIX");
        assert.equal(so.spec.triggers[0].metadata.listName, `${queuePrefix}:doc-index:wait`);
        for (const cert of objs.filter((o) => o.kind === "Certificate")) {
          assert.ok(cert.spec.usages.includes("server auth") && cert.spec.usages.includes("client auth"));
        }
      });
    }
  });
}

describe("deploy/k8s rendering", () => {
  it("renders the base and every overlay on disk, each to objects, or says why it cannot", {
    skip: skip || false,
  }, () => {
    // An overlay added under deploy/k8s/overlays without a render above would go untested.
    const onDisk = readdirSync(`${REPO_ROOT}deploy/k8s/overlays`, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
    assert.deepEqual(Object.keys(overlays).sort(), ["base", ...onDisk].sort());
    for (const [overlay, objs] of Object.entries(overlays)) {
      assert.ok(objs.length > 0, `${overlay} renders no objects`);
    }
  });
});
