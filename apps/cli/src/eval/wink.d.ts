// The winkjs packages ship no TypeScript types: these declare only what
// eval/bm25.ts calls, checked against wink-bm25-text-search 3.1.2 and
// wink-nlp-utils 2.1.0 (src/wink-bm25-text-search.js, src/wink-nlp-utils.js).

declare module "wink-bm25-text-search" {
  interface Bm25Config {
    /** Field name -> weight (BM25F); a document is added as an object with these fields. */
    fldWeights: Record<string, number>;
    /** k1 (default 1.2), b (default 0.75), k: the "+k" inside the idf's log (default 1). */
    bm25Params?: { k1?: number; b?: number; k?: number };
  }
  interface Bm25Engine {
    defineConfig(config: Bm25Config): boolean;
    /** Run in order on each field's text and on each query; the last must return the tokens. */
    definePrepTasks(tasks: ReadonlyArray<(text: string) => string[]>): number;
    addDoc(doc: Record<string, string>, id: string): number;
    /** Computes idf and the per-document term weights, rounded to `freqPrecision` decimals (4-9). Needs 3 documents. */
    consolidate(freqPrecision?: number): boolean;
    /** [document id, score] pairs, best first, at most `limit` (default 10). */
    search(text: string, limit?: number): Array<[string, number]>;
  }
  function bm25(): Bm25Engine;
  export = bm25;
}

declare module "wink-nlp-utils" {
  const nlp: {
    string: {
      lowerCase(text: string): string;
      /** Splits on non-word characters; expands negation elisions ("isn't" -> "is", "not"). */
      tokenize0(text: string): string[];
    };
    tokens: {
      /** Drops wink's English stop words (153 words). */
      removeWords(tokens: string[]): string[];
      /** Porter2 (Snowball English) stemmer. */
      stem(tokens: string[]): string[];
    };
  };
  export = nlp;
}
