// training/ validates the manifests it writes against the committed JSON Schema, so that file must
// be what the zod schema the runtime parses with generates today.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "../../../test/support/paths.js";
import { MANIFEST_SCHEMA_FILE, manifestJsonSchema } from "../src/manifest.js";

test("the committed manifest JSON Schema is what the zod schema generates", () => {
  assert.equal(
    readFileSync(join(REPO_ROOT, MANIFEST_SCHEMA_FILE), "utf8"),
    manifestJsonSchema(),
    `${MANIFEST_SCHEMA_FILE} has drifted from ManifestSchema: run \`pnpm schema\` and commit the result`,
  );
});
