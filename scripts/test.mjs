#!/usr/bin/env node
// The one test command (`pnpm test`): lint, typecheck, then every *.test.ts
// under apps/, packages/, services/ and test/ with node's test runner (one file at a
// time: the integration tests start real servers and share 2 cores), then the
// Python model-tooling tests. Pass file paths to run only those node tests.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;

function findTests(dir, out = []) {
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name === "dist" || name === "bench" || name.startsWith(".")) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) findTests(path, out);
    else if (name.endsWith(".test.ts")) out.push(path);
  }
  return out;
}

function run(cmd, args, opts = {}) {
  process.stdout.write(`\n$ ${cmd} ${args.join(" ")}\n`);
  const res = spawnSync(cmd, args, { stdio: "inherit", cwd: root, ...opts });
  if (res.status !== 0) process.exit(res.status ?? 1);
}

const only = process.argv.slice(2);
if (only.length === 0) {
  run("pnpm", ["exec", "biome", "check", "."]);
  run("pnpm", ["exec", "tsc", "-p", "tsconfig.json", "--noEmit"]);
}
const files = only.length
  ? only
  : ["apps", "packages", "services", "test"].flatMap((d) => findTests(join(root, d))).sort();
run("node", [
  "--conditions=tandem-src",
  "--import",
  "tsx",
  "--test",
  "--test-concurrency=1",
  "--test-reporter=spec",
  ...files,
]);
if (only.length === 0) run("training/.venv/bin/python", ["-m", "pytest", "-q", "training/tests"]);
