import assert from "node:assert/strict";
import { it } from "node:test";
import { formBatches } from "../src/batch.js";

// The teacher's padding-aware batching, which once lived in model-runtime (paddingChunks) and split
// the indexer's batches again; these are its assertions, now on the one place that forms batches.
const unbounded = { maxBatchTokens: Number.POSITIVE_INFINITY, maxBatchDocs: Number.POSITIVE_INFINITY };

it("groups rows of similar length so padding stays within 25% of real tokens", () => {
  const lengths = [5, 60, 6, 7, 58, 30, 5, 31, 200, 8, 29];
  const chunks = formBatches(lengths, unbounded).map((b) => b.indices);
  assert.deepEqual(
    chunks.flat().sort((a, b) => a - b),
    lengths.map((_, i) => i),
    "every row exactly once",
  );
  for (const c of chunks) {
    const lens = c.map((i) => lengths[i]!);
    const padded = c.length * Math.max(...lens);
    const real = lens.reduce((a, b) => a + b, 0);
    assert.ok(c.length === 1 || padded <= 1.25 * real, `chunk ${lens} pads ${padded} for ${real}`);
  }
  assert.ok(chunks.length < lengths.length, "similar rows do share a run");
  assert.deepEqual(formBatches([], unbounded), []);
});
