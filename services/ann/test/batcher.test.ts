// The search batcher alone: searches that arrive in one turn of the event loop share one call;
// other (wanted, ef) pairs get calls of their own; the batch size is capped; a failing call
// fails only its own searches.
import assert from "node:assert/strict";
import { test } from "node:test";
import { SearchBatcher } from "../src/batcher.js";
import type { Neighbours } from "../src/hnsw.js";

/** A fake index: each query's "result" is its first value, so answers can be matched to queries. */
function recorder(fail = (_wanted: number) => false) {
  const calls: Array<{ rows: number; wanted: number; ef: number }> = [];
  const searchBatch = (queries: Float32Array[], wanted: number, ef: number): Neighbours[] => {
    calls.push({ rows: queries.length, wanted, ef });
    if (fail(wanted)) throw new Error(`search failed for wanted=${wanted}`);
    return queries.map((q) => ({ keys: [q[0]!], distances: [0] }));
  };
  return { calls, searchBatch };
}

const q = (x: number) => Float32Array.of(x, 0);

test("concurrent searches share one call and each gets its own answer", async () => {
  const r = recorder();
  const b = new SearchBatcher(r.searchBatch, 64);
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => b.search(q(i), 10, 32)));
  assert.deepEqual(
    answers.map((a) => a.keys[0]),
    Array.from({ length: 20 }, (_, i) => i),
  );
  assert.deepEqual(r.calls, [{ rows: 20, wanted: 10, ef: 32 }]);
  // A later lone search is a call of its own.
  assert.equal((await b.search(q(99), 10, 32)).keys[0], 99);
  assert.deepEqual(r.calls.at(-1), { rows: 1, wanted: 10, ef: 32 });
});

test("other (wanted, ef) pairs go in calls of their own; the batch size is capped", async () => {
  const r = recorder();
  const b = new SearchBatcher(r.searchBatch, 4);
  const answers = await Promise.all([
    ...Array.from({ length: 6 }, (_, i) => b.search(q(i), 10, 32)),
    b.search(q(100), 5, 32),
    b.search(q(101), 10, 64),
  ]);
  assert.deepEqual(
    answers.map((a) => a.keys[0]),
    [0, 1, 2, 3, 4, 5, 100, 101],
  );
  assert.deepEqual(r.calls, [
    { rows: 4, wanted: 10, ef: 32 },
    { rows: 2, wanted: 10, ef: 32 },
    { rows: 1, wanted: 5, ef: 32 },
    { rows: 1, wanted: 10, ef: 64 },
  ]);
});

test("a failing call rejects its own searches only", async () => {
  const r = recorder((wanted) => wanted === 5);
  const b = new SearchBatcher(r.searchBatch, 64);
  const [bad, good] = await Promise.allSettled([b.search(q(1), 5, 32), b.search(q(2), 10, 32)]);
  assert.equal(bad.status, "rejected");
  assert.match(String((bad as PromiseRejectedResult).reason), /wanted=5/);
  assert.equal(good.status, "fulfilled");
  assert.equal((good as PromiseFulfilledResult<Neighbours>).value.keys[0], 2);
});
