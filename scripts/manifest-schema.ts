// Writes the bundle manifest's JSON Schema (packages/model-runtime/manifest.schema.json) from its zod
// schema, so training/ validates the manifests it writes against the contract the runtime reads with.
// packages/model-runtime/test/manifest-schema.test.ts fails when the committed file is out of date.
// Usage: pnpm schema
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { MANIFEST_SCHEMA_FILE, manifestJsonSchema } from "../packages/model-runtime/src/manifest.js";

writeFileSync(join(import.meta.dirname, "..", MANIFEST_SCHEMA_FILE), manifestJsonSchema());
console.log(`wrote ${MANIFEST_SCHEMA_FILE}`);
