// The READMEs' generated blocks (configuration tables from the config schemas,
// eval tables and benchmark output from docs/figures) must equal what
// `pnpm readme` writes: a variable added to a schema, or a figure edited by
// hand, fails here until the README is regenerated.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { readmes, regenerate } from "../../scripts/readme-figures.js";
import { REPO_ROOT } from "../support/paths.js";

test("every README is what its sources generate", () => {
  const files = readmes();
  // The services' benchmark tables are generated too, not only the top level's blocks.
  for (const file of ["README.md", "services/ann/README.md", "services/doc-indexer/README.md"]) {
    assert.ok(files.includes(file), `${file} is among the READMEs regenerated`);
  }
  assert.match(readFileSync(join(REPO_ROOT, "README.md"), "utf8"), /<!-- generated:config -->/);
  for (const file of files) {
    const readme = readFileSync(join(REPO_ROOT, file), "utf8");
    assert.equal(regenerate(readme), readme, `${file} is out of date: run \`pnpm readme\``);
  }
});

test("an empty block renders on the first run, and rendering again changes nothing", () => {
  const empty = "intro\n<!-- generated:bench-indexer -->\n<!-- /generated:bench-indexer -->\nafter\n";
  const once = regenerate(empty);
  assert.match(
    once,
    /<!-- generated:bench-indexer -->\n```\n# indexer benchmark[\s\S]*\n```\n<!-- \/generated:bench-indexer -->\nafter/,
  );
  assert.equal(regenerate(once), once);
});

test("every configuration variable of every service is documented", () => {
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  for (const name of ["MODEL_DIR", "MAX_BATCH_TOKENS", "DATA_DIR", "SNAPSHOT_WAL_BYTES", "REDIS_URL", "JOB_ATTEMPTS"]) {
    assert.match(readme, new RegExp(`\\| \`${name}\` \\|`), `${name} has a row`);
  }
});

test("the training README's release block is rendered from the artifact's provenance and its run's dose curve", () => {
  const name = "leaf-minilm-mpnet";
  const provenance = JSON.parse(
    readFileSync(join(REPO_ROOT, "training/artifacts", name, "provenance.json"), "utf8"),
  ) as { sha256: string; release: number; training: { examples_seen: number } };
  const release = provenance.release;
  const curve = readFileSync(join(REPO_ROOT, "docs/figures", `distill-${name}.r${release}.jsonl`), "utf8")
    .split("\n")
    .filter((l) => l.trim());
  const block = regenerate(`<!-- generated:distill-${name} -->\n<!-- /generated:distill-${name} -->\n`);
  assert.ok(block.includes(provenance.sha256.slice(0, 12)), "names the artifact's sha256");
  assert.ok(block.includes(provenance.training.examples_seen.toLocaleString("en-US")), "states the examples seen");
  const rows = block.split("\n").filter((l) => new RegExp(`^\\| r${release} \\| [\\d,]+ \\| [\\d,]+ \\|`).test(l));
  assert.equal(rows.length, curve.length, "one table row per dose point of the release's own run");
  assert.match(
    readFileSync(join(REPO_ROOT, "training/README.md"), "utf8"),
    new RegExp(`<!-- generated:distill-${name} -->`),
  );
});
