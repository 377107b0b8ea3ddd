import assert from "node:assert/strict";
import { test } from "node:test";
import { ndcgAt, quantile, recallAt, score } from "../src/eval/metrics.js";

const close = (actual: number | null, expected: number) => {
  // Ten significant digits: the hand-computed constants below carry ten.
  assert.ok(actual !== null, "expected a value, got null");
  assert.ok(Math.abs(actual - expected) < 1e-8, `${actual} != ${expected}`);
};

// Worked by hand. Qrels: a=2, b=1, c=1, z=0 (judged not relevant).
// Ranking: x, a, z, b, c.
//   DCG@3  = 0/log2(2) + 2/log2(3) + 0/log2(4)           = 2/1.5849625007 = 1.2618595071
//   IDCG@3 = 2/log2(2) + 1/log2(3) + 1/log2(4)           = 2 + 0.6309297536 + 0.5 = 3.1309297536
//   nDCG@3 = 1.2618595071 / 3.1309297536                 = 0.4030302838
//   DCG@5  = 1.2618595071 + 1/log2(5) + 1/log2(6)        = 1.2618595071 + 0.4306765581 + 0.3868528072
//          = 2.0793888724;  IDCG@5 = IDCG@3 (only 3 relevant) -> nDCG@5 = 0.6641442115
//   Recall@3 = |{a}| / 3 = 1/3;  Recall@5 = 3/3 = 1
const judged = new Map([
  ["a", 2],
  ["b", 1],
  ["c", 1],
  ["z", 0],
]);
const ranked = ["x", "a", "z", "b", "c"];

test("nDCG@k matches the hand-computed case (graded gains, log2 discount, ideal from qrels)", () => {
  close(ndcgAt(ranked, judged, 3), 0.4030302838);
  close(ndcgAt(ranked, judged, 5), 0.6641442115);
  close(ndcgAt(["a", "b", "c"], judged, 10), 1);
  // The ideal comes from the qrels: retrieving only `b` first is not a perfect score.
  close(ndcgAt(["b"], judged, 10), 1 / 3.1309297536);
  close(ndcgAt([], judged, 10), 0);
});

test("Recall@k counts only positively judged documents", () => {
  close(recallAt(ranked, judged, 3), 1 / 3);
  close(recallAt(ranked, judged, 5), 1);
  close(recallAt(["z", "x"], judged, 5), 0);
});

test("a duplicated id in a ranking is counted once", () => {
  close(ndcgAt(["a", "a"], judged, 10), 2 / 3.1309297536);
});

test("queries without a relevant document are left out of the mean", () => {
  const qrels = new Map([
    ["q1", judged],
    ["q2", new Map([["y", 0]])],
    ["q3", new Map([["y", 1]])],
  ]);
  const runs = new Map([
    ["q1", ranked],
    ["q2", ["y"]],
    ["q3", ["y"]],
  ]);
  const s = score(runs, qrels);
  assert.equal(s.queries, 2);
  // q1: nDCG@10 = nDCG@5 above; q3: 1.
  close(s.ndcg10, (0.6641442115 + 1) / 2);
  close(s.recall100, 1);
});

test("a query missing from the runs scores 0", () => {
  const s = score(new Map(), new Map([["q", judged]]));
  assert.equal(s.queries, 1);
  assert.equal(s.ndcg10, 0);
});

test("quantile is nearest-rank", () => {
  assert.equal(quantile([5, 1, 3, 2, 4], 0.5), 3);
  assert.equal(quantile([1, 2, 3, 4], 0.5), 2);
  assert.equal(quantile([1, 2, 3, 4], 0.95), 4);
  assert.ok(Number.isNaN(quantile([], 0.5)));
});
