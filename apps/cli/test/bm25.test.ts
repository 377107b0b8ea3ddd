// The lexical baseline on a real SciFact slice, through the eval's own loading
// and metric code. No model bundle and no ANN service: the bundle paths below
// do not exist, and no ANN client is given.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { DATASETS } from "../../../test/support/paths.js";
import { loadEvalSet } from "../src/eval/beir.js";
import { analyse, buildBm25 } from "../src/eval/bm25.js";
import { score } from "../src/eval/metrics.js";
import { runEval } from "../src/eval/run.js";

const SCIFACT = `${DATASETS}/scifact`;
const SLICE = { maxDocs: 300, maxQueries: 30 };
const set = loadEvalSet(SCIFACT, SLICE);
const NO_BUNDLE = "/nonexistent/tandem-bm25-test";

const evalOptions = {
  dataset: SCIFACT,
  bundles: { teacher: `${NO_BUNDLE}/teacher`, student: `${NO_BUNDLE}/student`, base: `${NO_BUNDLE}/base` },
  slice: SLICE,
  annLabel: "none",
  ef: 128,
  intraOpThreads: 1,
  cacheDir: `${NO_BUNDLE}/cache`,
  log: () => {},
};

test("analysis: lower-case, English stop words out, Porter2 stems", () => {
  assert.deepEqual(analyse("The Running dogs, and THEIR cells."), ["run", "dog", "cell"]);
  assert.deepEqual(analyse("the of and"), []);
});

test("bm25 mode on a scifact slice: no bundle, no ANN, the dense modes' doc and query set", async () => {
  const report = await runEval({ ...evalOptions, modes: ["bm25"] });
  assert.equal(report.docs, set.docs.length);
  assert.equal(report.queries, SLICE.maxQueries);
  assert.equal(report.slice, set.slice);
  assert.deepEqual(Object.keys(report.collections), []);
  assert.equal(report.results.length, 1);
  const r = report.results[0]!;
  assert.equal(r.mode, "bm25");
  assert.equal(r.space, "lexical");
  assert.equal(r.pctOfTeacher, null, "no teacher/teacher to compare with");
  assert.deepEqual(r.exact, r.hnsw, "one exhaustive ranking");
  assert.equal(r.hnsw.queries, SLICE.maxQueries);
  assert.ok(r.encodeP50Ms > 0 && r.encodeP95Ms >= r.encodeP50Ms);
  assert.match(report.method, /BM25/);
  assert.doesNotMatch(report.method, /model-runtime/, "no dense mode ran");

  // Chance on this slice: a pseudo-random order of all documents per query.
  const shuffled = new Map(
    set.queries.map((q) => [
      q.id,
      set.docs
        .map((d) => ({ id: d.id, k: createHash("sha1").update(`${q.id}/${d.id}`).digest("hex") }))
        .sort((a, b) => (a.k < b.k ? -1 : 1))
        .map((d) => d.id),
    ]),
  );
  const chance = score(shuffled, set.qrels);
  // Measured 0.885 on this slice (full SciFact: 0.680; Anserini 0.679): fewer distractors make it easier.
  assert.ok(r.hnsw.ndcg10 > 0.75, `nDCG@10 ${r.hnsw.ndcg10}`);
  assert.ok(r.hnsw.ndcg10 > chance.ndcg10 + 0.4, `nDCG@10 ${r.hnsw.ndcg10} vs chance ${chance.ndcg10}`);
  assert.ok(r.hnsw.recall100 > 0.85, `Recall@100 ${r.hnsw.recall100}`);
});

test("a query made of terms only one document has finds that document, and only it", () => {
  const index = buildBm25(set.docs);
  const df = new Map<string, number>();
  for (const d of set.docs) for (const t of new Set(analyse(d.text))) df.set(t, (df.get(t) ?? 0) + 1);
  let checked = 0;
  for (const d of set.docs.slice(0, 20)) {
    // Surface words (as a user types them) whose one stem occurs in no other document of the slice.
    const words = d.text.split(/\W+/).filter((w) => {
      const stems = analyse(w);
      return stems.length === 1 && df.get(stems[0]!) === 1;
    });
    if (words.length < 2) continue;
    assert.deepEqual(index.search(words.slice(0, 3).join(" "), 100), [d.id], `document ${d.id}: ${words.slice(0, 3)}`);
    checked++;
  }
  assert.ok(checked >= 10, `only ${checked} documents had two unique words`);
});

test("rankings are deterministic across index builds, and capped at k", () => {
  const a = buildBm25(set.docs);
  const b = buildBm25([...set.docs].reverse());
  for (const q of set.queries) {
    const ra = a.search(q.text, 100);
    assert.deepEqual(a.search(q.text, 100), ra);
    assert.ok(ra.length > 0 && ra.length <= 100);
    assert.equal(new Set(ra).size, ra.length, "a ranking is a set");
    assert.deepEqual(a.search(q.text, 10), ra.slice(0, 10));
    // Another insertion order gives the same scores; only exact ties may swap.
    assert.deepEqual(b.search(q.text, 10).slice(0, 3), ra.slice(0, 3), `query ${q.id}`);
  }
  assert.deepEqual(a.search("the of and", 10), []);
});

test("fewer than 3 documents: a message that says what to change, not the library's", () => {
  assert.throws(() => buildBm25(set.docs.slice(0, 2)), /at least 3 documents.*has 2 \(raise --max-docs\)/);
});

test("a dense mode without an ANN client fails before loading any bundle", async () => {
  assert.ok(!existsSync(NO_BUNDLE));
  await assert.rejects(runEval({ ...evalOptions, modes: ["bm25", "st"] }), /no ANN client/);
});
