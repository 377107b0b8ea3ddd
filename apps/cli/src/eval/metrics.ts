// Retrieval metrics with the standard (trec_eval / pytrec_eval, as used by
// BEIR and MTEB) definitions, so numbers here compare with published ones:
//
//   DCG@k   = sum over ranks i = 1..k of  rel(d_i) / log2(i + 1)     (linear gain)
//   IDCG@k  = the same sum over the qrels' grades sorted descending   (ideal from qrels,
//             not from what was retrieved)
//   nDCG@k  = DCG@k / IDCG@k
//   Recall@k = |top-k ∩ {d : rel(d) > 0}| / |{d : rel(d) > 0}|
//
// A query with no positively judged document has no defined nDCG or recall and
// is left out of the mean (trec_eval does the same), rather than counted as 0 or 1.

/** Graded judgements of one query: document id -> grade (0 = judged not relevant). */
export type Judgements = ReadonlyMap<string, number>;

/** All judgements: query id -> its judgements. */
export type Qrels = ReadonlyMap<string, Judgements>;

function discount(rank0: number): number {
  return Math.log2(rank0 + 2);
}

/** nDCG@k of one ranked list, or null when the query has no relevant document. */
export function ndcgAt(ranked: readonly string[], judged: Judgements, k: number): number | null {
  const ideal = [...judged.values()].filter((g) => g > 0).sort((a, b) => b - a);
  if (ideal.length === 0) return null;
  let idcg = 0;
  for (let i = 0; i < Math.min(k, ideal.length); i++) idcg += (ideal[i] as number) / discount(i);
  let dcg = 0;
  const seen = new Set<string>();
  for (let i = 0; i < Math.min(k, ranked.length); i++) {
    const id = ranked[i] as string;
    // A document listed twice would be counted twice by a naive sum; a ranking is a set.
    if (seen.has(id)) continue;
    seen.add(id);
    const g = judged.get(id) ?? 0;
    if (g > 0) dcg += g / discount(i);
  }
  return dcg / idcg;
}

/** Recall@k of one ranked list, or null when the query has no relevant document. */
export function recallAt(ranked: readonly string[], judged: Judgements, k: number): number | null {
  let relevant = 0;
  for (const g of judged.values()) if (g > 0) relevant++;
  if (relevant === 0) return null;
  const top = new Set(ranked.slice(0, k));
  let found = 0;
  for (const id of top) if ((judged.get(id) ?? 0) > 0) found++;
  return found / relevant;
}

export interface Scores {
  ndcg10: number;
  recall100: number;
  /** Queries that entered the means (those with at least one relevant document). */
  queries: number;
}

/** Mean nDCG@10 and Recall@100 over every query of `qrels` that has a relevant document. */
export function score(runs: ReadonlyMap<string, readonly string[]>, qrels: Qrels): Scores {
  let ndcg = 0;
  let recall = 0;
  let n = 0;
  for (const [qid, judged] of qrels) {
    const ranked = runs.get(qid) ?? [];
    const nd = ndcgAt(ranked, judged, 10);
    const rc = recallAt(ranked, judged, 100);
    if (nd === null || rc === null) continue;
    ndcg += nd;
    recall += rc;
    n++;
  }
  return { ndcg10: n ? ndcg / n : 0, recall100: n ? recall / n : 0, queries: n };
}

/** The p-quantile (0..1) of a sample, nearest-rank; NaN for an empty sample. */
export function quantile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length)));
  return sorted[rank - 1] as number;
}
