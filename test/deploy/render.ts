import { spawnSync } from "node:child_process";
import { parseAllDocuments } from "yaml";
import { REPO_ROOT } from "../support/paths.js";

/** A rendered Kubernetes object, loosely typed: the tests read fields, schema validation types them. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: rendered YAML, checked field by field by the tests
  spec?: any;
  data?: Record<string, string>;
}

/**
 * Renders a kustomization with `kubectl kustomize` (kubectl >= 1.27 embeds kustomize v5; it works
 * offline). Decision: kubectl is on the project's machine image (/usr/bin/kubectl); a machine
 * without it skips the render tests with this reason instead of failing, and the Dockerfile and
 * schema-name checks still run. Set KUBECTL to use another binary.
 */
export const KUBECTL = process.env.KUBECTL ?? "kubectl";

export function kubectlMissing(): string | false {
  const res = spawnSync(KUBECTL, ["version", "--client"], { encoding: "utf8" });
  return res.status === 0 ? false : `kubectl not found (${KUBECTL}): cannot render kustomize; install kubectl >= 1.27`;
}

export function render(dir: string): K8sObject[] {
  const res = spawnSync(KUBECTL, ["kustomize", `${REPO_ROOT}${dir}`], { encoding: "utf8", maxBuffer: 64 << 20 });
  if (res.status !== 0) throw new Error(`kubectl kustomize ${dir} failed:\n${res.stderr}`);
  return parseAllDocuments(res.stdout)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}
