import type { EmbeddingModel, TextKind } from "@tandem/model-runtime";
import type { Batcher } from "./batcher.js";
import type { CachedEmbedding, EmbeddingCache } from "./cache.js";

/**
 * cache -> tokenize -> batch -> infer/pool (in the batcher's run): the request path after
 * validation, one for the gRPC and the HTTP API, so both share the queue, its limits and the cache.
 */
export class Embedder {
  constructor(
    readonly model: EmbeddingModel,
    private readonly batcher: Batcher,
    private readonly cache: EmbeddingCache,
  ) {}

  /** One embedding per text, in order; `signal` and `deadline` drop the work if the caller goes away first. */
  async embed(
    texts: readonly string[],
    kind: TextKind,
    signal: AbortSignal,
    deadline: number,
  ): Promise<CachedEmbedding[]> {
    const results: Array<CachedEmbedding | undefined> = texts.map((t) => this.cache.get(kind, t));
    const misses = results.flatMap((r, i) => (r === undefined ? [i] : []));
    if (misses.length > 0) {
      const tokenized = misses.map((i) => this.model.tokenize(texts[i] as string, kind));
      const vectors = await this.batcher.submit(tokenized, signal, deadline);
      misses.forEach((i, j) => {
        const tok = tokenized[j]!;
        const entry = { vector: vectors[j]!, tokens: tok.ids.length, truncated: tok.truncated };
        results[i] = entry;
        this.cache.set(kind, texts[i] as string, entry);
      });
    }
    return results as CachedEmbedding[];
  }
}
