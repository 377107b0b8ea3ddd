// Dependencies point one way (DESIGN.md): apps → services → packages, never upward, and no service
// on another (what two services share lives in packages/). Each top folder is one layer: apps/ (the
// `tandem` CLI), services/, packages/. @tandem/client, the one place gRPC clients are written, stands
// on packages only.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "../support/paths.js";

type Layer = "package" | "service" | "app";
const RANK: Record<Layer, number> = { package: 0, service: 1, app: 2 };

interface Workspace {
  dir: string;
  name: string;
  layer: Layer;
  deps: string[];
}

const LAYER_OF: Record<string, Layer> = { apps: "app", services: "service", packages: "package" };

const workspaces: Workspace[] = Object.entries(LAYER_OF).flatMap(([top, layer]) =>
  readdirSync(join(REPO_ROOT, top)).map((d) => {
    const dir = `${top}/${d}`;
    const manifest = JSON.parse(readFileSync(join(REPO_ROOT, dir, "package.json"), "utf8")) as {
      name: string;
      dependencies?: Record<string, string>;
    };
    return { dir, name: manifest.name, layer, deps: Object.keys(manifest.dependencies ?? {}) };
  }),
);
const byName = new Map(workspaces.map((w) => [w.name, w]));

test("the workspaces are apps/*, services/* and packages/*, each layer present (the CLI is an app)", () => {
  const workspaceYaml = readFileSync(join(REPO_ROOT, "pnpm-workspace.yaml"), "utf8");
  for (const top of Object.keys(LAYER_OF)) assert.match(workspaceYaml, new RegExp(`^  - ${top}/\\*$`, "m"));
  assert.equal(byName.get("@tandem/cli")?.dir, "apps/cli");
  for (const layer of Object.values(LAYER_OF))
    assert.ok(
      workspaces.some((w) => w.layer === layer),
      `no ${layer} workspace`,
    );
});

function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) sources(path, out);
    else if (/\.(ts|mjs)$/.test(name)) out.push(path);
  }
  return out;
}

test("workspace dependencies point down: app → service → package, no service on another", () => {
  for (const w of workspaces) {
    for (const dep of w.deps) {
      const d = byName.get(dep);
      if (!d) continue;
      const down = RANK[d.layer] < RANK[w.layer] || (d.layer === "package" && w.layer === "package");
      assert.ok(down, `${w.dir} (${w.layer}) depends on ${dep} (${d.layer})`);
    }
  }
});

test("every @tandem import in src/ is a declared dependency, so the manifests tell the layering", () => {
  for (const w of workspaces) {
    for (const file of sources(join(REPO_ROOT, w.dir, "src"))) {
      for (const [, name] of readFileSync(file, "utf8").matchAll(/from "(@tandem\/[a-z-]+)/g)) {
        if (name === w.name) continue;
        assert.ok(w.deps.includes(name as string), `${file} imports ${name}, not among ${w.dir}'s dependencies`);
      }
    }
  }
});

test("@tandem/client depends on packages only: grpc-js, proto, service-kit", () => {
  const client = byName.get("@tandem/client");
  assert.ok(client);
  assert.deepEqual([...client.deps].sort(), ["@grpc/grpc-js", "@tandem/proto", "@tandem/service-kit"]);
});

test("no src/ file reaches a higher layer by a relative path either", () => {
  const above: Record<Layer, string[]> = { package: ["apps", "services"], service: ["apps"], app: [] };
  for (const w of workspaces) {
    for (const file of sources(join(REPO_ROOT, w.dir, "src"))) {
      for (const [, spec] of readFileSync(file, "utf8").matchAll(/(?:from|import\()\s*"(\.[^"]*)"/g)) {
        for (const top of above[w.layer])
          assert.ok(!(spec as string).includes(`/${top}/`), `${file} imports ${spec}, above ${w.dir} (${w.layer})`);
      }
    }
  }
});
