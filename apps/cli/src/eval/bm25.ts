import bm25 from "wink-bm25-text-search";
import nlp from "wink-nlp-utils";
import type { EvalDoc } from "./beir.js";

/**
 * The lexical baseline of `tandem eval`: Okapi BM25 over the same document
 * texts the dense towers embed ("title text", as the indexer builds them),
 * scored in this process by wink-bm25-text-search. It has no ANN index and no
 * model bundle; every document sharing a term with the query is scored, so the
 * ranking is exhaustive.
 */

/**
 * Anserini's parameters for its BEIR baselines ("flat" BM25: 67.9 nDCG@10 on
 * SciFact, 32.2 on NFCorpus), so this row compares with published numbers. k is
 * the +1 inside the idf's log: Lucene's idf, which never goes negative.
 */
export const BM25_PARAMS = { k1: 0.9, b: 0.4, k: 1 } as const;

/** What the report's method says of this mode. */
export const BM25_METHOD =
  `BM25 (wink-bm25-text-search, k1=${BM25_PARAMS.k1} b=${BM25_PARAMS.b}; lower-cased, English stop words, Porter2 ` +
  "stems; title + text) scored in-process over the same documents and queries: exhaustive, so its exact columns " +
  "equal its HNSW ones, and its encode time is its whole search of one query";

/** The one analysis for documents and queries: lower-case, split on non-word characters, drop English stop words, Porter2-stem. */
export function analyse(text: string): string[] {
  return nlp.tokens.stem(nlp.tokens.removeWords(nlp.string.tokenize0(nlp.string.lowerCase(text))));
}

export interface LexicalIndex {
  /** Ids of the (at most) `k` best documents, best first; only documents sharing a term with the query are ranked. */
  search(query: string, k: number): string[];
}

/** Indexes `docs` (at least 3: the library computes idf only then). Equal ids are an error. */
export function buildBm25(docs: readonly Pick<EvalDoc, "id" | "text">[]): LexicalIndex {
  if (docs.length < 3) {
    throw new Error(`BM25 needs at least 3 documents to compute idf; this set has ${docs.length} (raise --max-docs)`);
  }
  const engine = bm25();
  engine.defineConfig({ fldWeights: { text: 1 }, bm25Params: { ...BM25_PARAMS } });
  engine.definePrepTasks([analyse]);
  for (const d of docs) engine.addDoc({ text: d.text }, d.id);
  // Term weights are stored rounded; at the default 4 decimals distinct documents tie.
  engine.consolidate(9);
  return { search: (query, k) => (k > 0 ? engine.search(query, k).map(([id]) => id) : []) };
}
