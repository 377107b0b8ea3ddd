import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { REPO_ROOT } from "../support/paths.js";

/**
 * No Docker engine here (nor in CI): the Dockerfiles are kept correct by reading, and this
 * test holds the invariants a reader would check: multi-stage, a non-root numeric USER in
 * every runtime stage, no model weights copied in, a gRPC HEALTHCHECK, an entry point that
 * exists, and a .dockerignore that keeps models and node_modules out of the build context.
 */

interface Stage {
  from: string;
  name: string;
  lines: string[];
}

function stages(text: string): Stage[] {
  const out: Stage[] = [];
  // Join continuation lines, drop comments.
  const lines = text
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  for (const line of lines) {
    const m = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (m) out.push({ from: m[1] as string, name: m[2] ?? "", lines: [] });
    else out.at(-1)?.lines.push(line);
  }
  return out;
}

/** `ports`: the *_PORT variables a runtime stage sets in ENV, each also EXPOSEd (and nothing else is). */
const SERVICES: Record<string, { runtimeStages: string[]; cmd: string; ports: string[] }> = {
  "query-encoder": {
    runtimeStages: ["runtime"],
    cmd: "services/query-encoder/src/main.ts",
    // HTTP_PORT: the OpenAI-compatible /v1/embeddings, on in the image (its schema default is off).
    ports: ["PORT", "HTTP_PORT", "HEALTH_PORT", "METRICS_PORT"],
  },
  ann: { runtimeStages: ["runtime"], cmd: "services/ann/src/main.ts", ports: ["PORT", "HEALTH_PORT", "METRICS_PORT"] },
  "doc-indexer": {
    runtimeStages: ["cpu", "cuda"],
    cmd: "services/doc-indexer/src/main.ts",
    ports: ["PORT", "HEALTH_PORT", "METRICS_PORT"],
  },
};

/** The variables a stage's ENV lines set (`ENV A=1 B=2` form). */
function envOf(s: Stage): Map<string, string> {
  const vars = new Map<string, string>();
  for (const l of s.lines.filter((x) => /^ENV\s/i.test(x))) {
    for (const pair of l.replace(/^ENV\s+/i, "").split(/\s+/)) {
      const eq = pair.indexOf("=");
      if (eq > 0) vars.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
  }
  return vars;
}
const MODEL_FILES =
  /\.(onnx|onnx\.data|safetensors|bin|pt)\b|\.cache\/models|tokenizer\.json|manifest\.json|\/models\b/i;

for (const [svc, want] of Object.entries(SERVICES)) {
  describe(`services/${svc}/Dockerfile`, () => {
    const path = `${REPO_ROOT}services/${svc}/Dockerfile`;
    const text = readFileSync(path, "utf8");
    const all = stages(text);

    it("is multi-stage with a build stage and the expected runtime stage(s) last-built from slim/CUDA bases", () => {
      assert.ok(all.length >= 2, "multi-stage");
      assert.ok(all.some((s) => s.name === "build"));
      for (const name of want.runtimeStages) {
        const s = all.find((x) => x.name === name);
        assert.ok(s, `stage ${name}`);
        assert.ok(
          !s.lines.some((l) => /^RUN\s+.*(apt-get install|pnpm install|npm install)/.test(l)),
          `${name}: no toolchain in the runtime image`,
        );
      }
      assert.match(text, /ARG NODE_IMAGE=node:20[\w.-]*-slim/, "node 20 slim base");
      // The default target (last stage) is a runtime stage, never the build stage.
      assert.ok(want.runtimeStages.includes((all.at(-1) as Stage).name));
    });

    it("runtime stages run as a numeric non-root USER, with a gRPC HEALTHCHECK and an existing entry point", () => {
      for (const name of want.runtimeStages) {
        const s = all.find((x) => x.name === name) as Stage;
        const users = s.lines.filter((l) => /^USER\s/i.test(l));
        assert.ok(users.length > 0, `${name}: USER set`);
        const user = (users.at(-1) as string).split(/\s+/)[1] as string;
        assert.match(user, /^[1-9]\d*(:[1-9]\d*)?$/, `${name}: numeric non-root uid (runAsNonRoot can verify it)`);
        assert.ok(
          s.lines.some((l) => /^HEALTHCHECK .*probe\.mjs/.test(l)),
          `${name}: HEALTHCHECK via grpc health`,
        );
        assert.ok(
          s.lines.some((l) => l.includes("register.mjs")),
          `${name}: entry through the kit's register.mjs`,
        );
        const cmd = s.lines.find((l) => /^CMD\s/.test(l)) as string;
        assert.ok(cmd.includes(want.cmd), `${name}: CMD ${want.cmd}`);
      }
      for (const f of ["packages/service-kit/probe.mjs", "packages/service-kit/register.mjs", want.cmd]) {
        assert.ok(existsSync(`${REPO_ROOT}${f}`), `${f} exists`);
      }
    });

    it("runtime stages set the service's ports in ENV and EXPOSE exactly those", () => {
      for (const name of want.runtimeStages) {
        const s = all.find((x) => x.name === name) as Stage;
        const env = envOf(s);
        const set = [...env.keys()].filter((k) => k.endsWith("PORT")).sort();
        assert.deepEqual(set, [...want.ports].sort(), `${name}: the *_PORT variables in ENV`);
        const exposed = s.lines
          .filter((l) => /^EXPOSE\s/i.test(l))
          .flatMap((l) => l.replace(/^EXPOSE\s+/i, "").split(/\s+/))
          .map((p) => Number(p.replace(/\/tcp$/, "")))
          .sort((a, b) => a - b);
        const wanted = want.ports.map((v) => Number(env.get(v))).sort((a, b) => a - b);
        assert.ok(
          wanted.every((p) => Number.isInteger(p) && p > 0),
          `${name}: every port is on (> 0)`,
        );
        assert.deepEqual(exposed, wanted, `${name}: EXPOSE = ${want.ports.join(", ")}`);
      }
    });

    it("copies no model files (models are mounted), and the build context excludes them", () => {
      for (const s of all) {
        for (const l of s.lines.filter((x) => /^(COPY|ADD)\s/i.test(x))) {
          const sources = l
            .replace(/^(COPY|ADD)\s+(--\S+\s+)*/i, "")
            .split(/\s+/)
            .slice(0, -1);
          for (const src of sources) assert.ok(!MODEL_FILES.test(src), `${s.name}: ${l} copies model files`);
        }
      }
      const ignore = readFileSync(`${path}.dockerignore`, "utf8");
      for (const p of [".cache", "**/node_modules", "**/*.onnx"])
        assert.ok(ignore.split("\n").includes(p), `ignores ${p}`);
    });
  });
}

describe("deploy/docker/models.Dockerfile", () => {
  it("is a data-only image of bundles for init containers, non-root", () => {
    const text = readFileSync(`${REPO_ROOT}deploy/docker/models.Dockerfile`, "utf8");
    assert.match(text, /^USER 1000:1000$/m);
    assert.match(text, /COPY .* \/bundles\//);
  });
});
