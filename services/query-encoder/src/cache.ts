import type { Meter } from "@tandem/service-kit";
import { LRUCache } from "lru-cache";

export interface CachedEmbedding {
  vector: Float32Array;
  tokens: number;
  truncated: boolean;
}

/**
 * Repeated queries (autocomplete, popular searches) skip tokenisation and
 * inference. Keyed by model hash as well as text so a bundle swap can never
 * serve a vector from another space.
 */
export class EmbeddingCache {
  private readonly lru: LRUCache<string, CachedEmbedding> | null;
  private readonly hits;
  private readonly misses;

  constructor(
    entries: number,
    private readonly modelKey: string,
    meter: Meter,
  ) {
    this.lru = entries > 0 ? new LRUCache({ max: entries }) : null;
    this.hits = meter.createCounter("encoder_cache_hits", { description: "texts served from the LRU cache" });
    this.misses = meter.createCounter("encoder_cache_misses", { description: "texts that needed inference" });
  }

  get enabled(): boolean {
    return this.lru !== null;
  }

  private key(kind: string, text: string): string {
    return `${this.modelKey}\u0000${kind}\u0000${text}`;
  }

  get(kind: string, text: string): CachedEmbedding | undefined {
    if (!this.lru) return undefined;
    const hit = this.lru.get(this.key(kind, text));
    (hit ? this.hits : this.misses).add(1);
    return hit;
  }

  set(kind: string, text: string, value: CachedEmbedding): void {
    this.lru?.set(this.key(kind, text), value);
  }
}
