// The search batcher alone: searches that arrive in one turn of the event loop share one call;
// other beam widths get calls of their own; the batch size is capped; a failing call fails
// only its own searches.
import assert from "node:assert/strict";
import { test } from "node:test";
import { SearchBatcher } from "../src/batcher.js";
import type { Neighbours } from "../src/hnsw.js";

/** A fake index: each query's "result" is its first value, so answers can be matched to queries. */
function recorder(fail = (_beam: number) => false) {
  const calls: Array<{ rows: number; beam: number }> = [];
  const searchBatch = (queries: Float32Array[], beam: number): Neighbours[] => {
    calls.push({ rows: queries.length, beam });
    if (fail(beam)) throw new Error(`search failed for beam=${beam}`);
    return queries.map((q) => ({ keys: [q[0]!], distances: [0] }));
  };
  return { calls, searchBatch };
}

const q = (x: number) => Float32Array.of(x, 0);

test("concurrent searches share one call and each gets its own answer", async () => {
  const r = recorder();
  const b = new SearchBatcher(r.searchBatch, 64);
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => b.search(q(i), 32)));
  assert.deepEqual(
    answers.map((a) => a.keys[0]),
    Array.from({ length: 20 }, (_, i) => i),
  );
  assert.deepEqual(r.calls, [{ rows: 20, beam: 32 }]);
  // A later lone search is a call of its own.
  assert.equal((await b.search(q(99), 32)).keys[0], 99);
  assert.deepEqual(r.calls.at(-1), { rows: 1, beam: 32 });
});

test("other beam widths go in calls of their own; the batch size is capped", async () => {
  const r = recorder();
  const b = new SearchBatcher(r.searchBatch, 4);
  const answers = await Promise.all([
    ...Array.from({ length: 6 }, (_, i) => b.search(q(i), 32)),
    b.search(q(100), 16),
    b.search(q(101), 64),
  ]);
  assert.deepEqual(
    answers.map((a) => a.keys[0]),
    [0, 1, 2, 3, 4, 5, 100, 101],
  );
  assert.deepEqual(r.calls, [
    { rows: 4, beam: 32 },
    { rows: 2, beam: 32 },
    { rows: 1, beam: 16 },
    { rows: 1, beam: 64 },
  ]);
});

test("a failing call rejects its own searches only", async () => {
  const r = recorder((beam) => beam === 16);
  const b = new SearchBatcher(r.searchBatch, 64);
  const [bad, good] = await Promise.allSettled([b.search(q(1), 16), b.search(q(2), 32)]);
  assert.equal(bad.status, "rejected");
  assert.match(String((bad as PromiseRejectedResult).reason), /beam=16/);
  assert.equal(good.status, "fulfilled");
  assert.equal((good as PromiseFulfilledResult<Neighbours>).value.keys[0], 2);
});
