import type { CollectionMeta } from "./backend.js";
import type { SearchBatcher } from "./batcher.js";
import { exactTopK } from "./exact.js";
import { type CompiledClause, FilterPlan, type PayloadIndex } from "./filter.js";
import type { Neighbours } from "./hnsw.js";
import type { PayloadStore } from "./payloads.js";

export interface SearchOptions {
  k: number;
  ef: number;
  exact: boolean;
  filter: CompiledClause[] | null;
}

const EXACT_CHUNK_ROWS = 8192;

/**
 * How one collection answers a search, over its graph (through the batcher), its filter index
 * and its store of float32 originals: a plain HNSW beam, a filtered over-fetch that grows until
 * k matches are found, or an exact scan; with rescoring, the graph's candidates are ranked by
 * their exact distance to the originals. It only reads: the collection's write path keeps what
 * it reads current.
 */
export class SearchPlanner {
  constructor(
    private readonly meta: CollectionMeta,
    private readonly limits: { filterExactMax: number; filterMaxOverfetch: number },
    private readonly batcher: SearchBatcher,
    private readonly filters: PayloadIndex,
    private readonly store: PayloadStore,
    /** Points held now: read at each step, since writes go on while a filtered search over-fetches. */
    private readonly count: () => number,
  ) {}

  /** Nearest neighbours as (key, distance), best first. */
  async search(query: Float32Array, o: SearchOptions): Promise<Neighbours> {
    if (this.count() === 0) return { keys: [], distances: [] };
    const wanted = this.candidates(o.k);
    if (o.filter === null) {
      if (o.exact) return this.exactOver(null, query, o.k);
      return this.ranked(await this.batcher.search(query, Math.max(wanted, o.ef)), wanted, query, o.k);
    }
    const plan = new FilterPlan(this.filters, o.filter);
    const estimate = plan.estimate;
    if (estimate === 0) return { keys: [], distances: [] };
    if (o.exact || estimate <= this.limits.filterExactMax) return this.exactOver(plan.materialize(), query, o.k);

    // Over-fetch from HNSW: start from the expected number of candidates that
    // yields the wanted matches at this selectivity (x2 margin) and grow 4x until
    // they are found; past the cap, the exact scan of the matching set
    // guarantees k hits whenever k exist. Each fetch goes through the batcher, so
    // it shares a native call with the searches of the same beam width.
    let fetch = Math.max(o.ef, Math.ceil(((wanted * this.count()) / estimate) * 2));
    for (;;) {
      fetch = Math.min(fetch, this.count(), this.limits.filterMaxOverfetch);
      const res = await this.batcher.search(query, fetch);
      const out: Neighbours = { keys: [], distances: [] };
      for (let i = 0; i < res.keys.length && out.keys.length < wanted; i++) {
        const key = res.keys[i]!;
        if (plan.matches(key)) {
          out.keys.push(key);
          out.distances.push(res.distances[i]!);
        }
      }
      if (out.keys.length >= wanted) return this.ranked(out, wanted, query, o.k);
      if (fetch >= this.count() || fetch >= this.limits.filterMaxOverfetch) break;
      fetch *= 4;
    }
    return this.exactOver(plan.materialize(), query, o.k);
  }

  /** How many graph candidates a search of k results ranks: k, or k x oversampling when rescoring. */
  private candidates(k: number): number {
    return this.meta.rescore ? Math.ceil(k * this.meta.oversampling) : k;
  }

  /**
   * The k best of the graph's first `wanted` candidates: in the graph's order, or, when the
   * collection rescores, by exact distance to the stored originals (whose distances are then
   * the ones answered).
   */
  private ranked(res: Neighbours, wanted: number, query: Float32Array, k: number): Neighbours {
    if (this.meta.rescore) return this.exactOver(res.keys.slice(0, wanted), query, k);
    return { keys: res.keys.slice(0, k), distances: res.distances.slice(0, k) };
  }

  /** Brute force over `keys` (null: the whole collection), in bounded chunks. */
  private exactOver(keys: number[] | null, query: Float32Array, k: number): Neighbours {
    const all = keys ?? this.store.allKeys();
    const candidates: Array<{ key: number; distance: number }> = [];
    for (let start = 0; start < all.length; start += EXACT_CHUNK_ROWS) {
      const chunk = this.store.gather(all.slice(start, start + EXACT_CHUNK_ROWS));
      const res = exactTopK(chunk.matrix, chunk.keys, this.meta.dims, query, k, this.meta.metric);
      res.keys.forEach((key, i) => {
        candidates.push({ key, distance: res.distances[i]! });
      });
    }
    candidates.sort((a, b) => a.distance - b.distance);
    const top = candidates.slice(0, k);
    return { keys: top.map((c) => c.key), distances: top.map((c) => c.distance) };
  }
}
