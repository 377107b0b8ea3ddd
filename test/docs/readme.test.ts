// The README's generated blocks (configuration tables from the config schemas,
// eval tables and benchmark output from docs/figures) must equal what
// `pnpm readme` writes: a variable added to a schema, or a figure edited by
// hand, fails here until the README is regenerated.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { regenerate } from "../../scripts/readme-figures.js";
import { REPO_ROOT } from "../support/paths.js";

test("README.md is what its sources generate", () => {
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  assert.match(readme, /<!-- generated:config -->/);
  assert.equal(regenerate(readme), readme, "README.md is out of date: run `pnpm readme`");
});

test("every configuration variable of every service is documented", () => {
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  for (const name of ["MODEL_DIR", "MAX_BATCH_TOKENS", "DATA_DIR", "SNAPSHOT_WAL_BYTES", "REDIS_URL", "JOB_ATTEMPTS"]) {
    assert.match(readme, new RegExp(`\\| \`${name}\` \\|`), `${name} has a row`);
  }
});
