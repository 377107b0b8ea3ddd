import { availableParallelism } from "node:os";
import { Index, MetricKind, ScalarKind } from "usearch";

/**
 * The HNSW index (usearch): vectors under internal uint32 keys. The mapping
 * from the user's string ids to keys lives in the payload store; this module
 * only knows numbers.
 *
 * usearch's JS binding has no per-query ef: its search beam is
 * max(expansion_search, wanted). We build the index with expansion_search = 1
 * and ask for max(k, ef) results, which gives exactly a beam of width ef (the
 * hnswlib semantics), then the caller keeps the first k.
 */

export type MetricName = "cosine" | "dot" | "l2";
export type Quantization = "f32" | "f16" | "i8";

export interface HnswParams {
  dims: number;
  metric: MetricName;
  m: number;
  efConstruction: number;
  quantization: Quantization;
}

const METRIC: Record<MetricName, MetricKind> = {
  cosine: MetricKind.Cos,
  dot: MetricKind.IP,
  l2: MetricKind.L2sq,
};
const SCALAR: Record<Quantization, ScalarKind> = {
  f32: ScalarKind.F32,
  f16: ScalarKind.F16,
  i8: ScalarKind.I8,
};
const SCALAR_BYTES: Record<Quantization, number> = { f32: 4, f16: 2, i8: 1 };

export function usearchMetric(metric: MetricName): MetricKind {
  return METRIC[metric];
}

/** usearch distance -> the API's score: similarity for cosine/dot (higher is better), squared L2 for l2. */
export function scoreOf(metric: MetricName, distance: number): number {
  return metric === "l2" ? distance : 1 - distance;
}

export interface Neighbours {
  keys: number[];
  distances: number[];
}

/**
 * Below this many points, and for batches under 64 (where spawning native
 * threads costs more than it saves), inserts run one at a time. Measured (usearch 2.25.3,
 * 24-d uniform vectors, M = 16, efC = 128, 2 threads): a 150-point batch added
 * concurrently left 15 of 1,600 exact top-100 neighbours unreachable at ef =
 * 128, and a 500-point one 50, against 0 and 1 when added on one thread; from
 * ~5,000 points on the two agree. Found by the end-to-end eval, whose 150-point
 * collection lost 4 nDCG@10 points to it.
 */
export const PARALLEL_ADD_MIN_SIZE = 1024;

/** usearch's constructor options for `params`: plain values, so a worker thread can be handed them. */
export function usearchOptions(params: HnswParams) {
  return {
    dimensions: params.dims,
    metric: METRIC[params.metric],
    quantization: SCALAR[params.quantization],
    connectivity: params.m,
    expansion_add: params.efConstruction,
    expansion_search: 1,
    multi: false,
  };
}

/** One query's result rows, up to the first unfilled slot (the max key, or a NaN distance). */
function neighboursOf(res: { keys: BigUint64Array; distances: Float32Array }): Neighbours {
  const keys: number[] = [];
  const distances: number[] = [];
  for (let i = 0; i < res.keys.length; i++) {
    const k = res.keys[i]!;
    const d = res.distances[i]!;
    if (k === 0xffffffffffffffffn || Number.isNaN(d)) break;
    keys.push(Number(k));
    distances.push(d);
  }
  return { keys, distances };
}

export class HnswIndex {
  private readonly index: Index;
  private readonly threads: number;

  constructor(
    readonly params: HnswParams,
    threads = 0,
  ) {
    this.threads = threads > 0 ? threads : availableParallelism();
    this.index = new Index(usearchOptions(params));
  }

  /** An index read from a file a graph thread wrote (graph-thread.ts; throws when the file is unusable). */
  static load(params: HnswParams, path: string, threads = 0): HnswIndex {
    const idx = new HnswIndex(params, threads);
    idx.index.load(path);
    if (idx.index.dimensions() !== params.dims) {
      throw new Error(`index file ${path} has ${idx.index.dimensions()} dimensions, expected ${params.dims}`);
    }
    return idx;
  }

  get size(): number {
    return this.index.size();
  }

  /** Approximate bytes held: vectors at their quantised width plus the base-layer graph and keys. */
  get memoryBytes(): number {
    const perVector = this.params.dims * SCALAR_BYTES[this.params.quantization] + this.params.m * 2 * 4 + 8 + 16;
    return this.index.capacity() * perVector;
  }

  contains(key: number): boolean {
    return this.index.contains(BigInt(key)) as boolean;
  }

  /**
   * Inserts or replaces: usearch refuses a key it holds, so present keys are
   * removed first. `vectors` is the flat row-major matrix of `keys.length` rows.
   */
  upsert(keys: number[], vectors: Float32Array): void {
    if (keys.length === 0) return;
    const big = BigUint64Array.from(keys, (k) => BigInt(k));
    const present = this.index.contains(big) as boolean[];
    const stale = big.filter((_, i) => present[i]);
    if (stale.length > 0) this.index.remove(stale);
    // Every call passes the full thread count: usearch reserves one insertion
    // context per thread only when it grows capacity, so a capacity reserved by
    // a one-thread call makes a later concurrent call that fits in it fail
    // ("Reserve capacity ahead of insertions!"). Serial insertion is one key per call.
    if (keys.length >= 64 && this.index.size() >= PARALLEL_ADD_MIN_SIZE) {
      this.index.add(big, vectors, this.threads);
      return;
    }
    const dims = this.params.dims;
    for (let i = 0; i < keys.length; i++) {
      this.index.add(big.subarray(i, i + 1), vectors.subarray(i * dims, (i + 1) * dims), this.threads);
    }
  }

  remove(keys: number[]): void {
    if (keys.length === 0) return;
    const big = BigUint64Array.from(keys, (k) => BigInt(k));
    const present = this.index.contains(big) as boolean[];
    const gone = big.filter((_, i) => present[i]);
    if (gone.length > 0) this.index.remove(gone);
  }

  /** Up to `max(wanted, ef)` nearest keys, best first (see the note at the top about ef). */
  search(query: Float32Array, wanted: number, ef: number): Neighbours {
    const n = Math.min(Math.max(wanted, ef), Math.max(1, this.size));
    if (this.size === 0) return { keys: [], distances: [] };
    return neighboursOf(this.index.search(query, n, 1));
  }

  /** Several queries in one native call, spread over the thread pool; the same results as `search` for each. */
  searchBatch(queries: Float32Array[], wanted: number, ef: number): Neighbours[] {
    if (queries.length === 1) return [this.search(queries[0] as Float32Array, wanted, ef)];
    if (this.size === 0) return queries.map(() => ({ keys: [], distances: [] }));
    const n = Math.min(Math.max(wanted, ef), this.size);
    const res = this.index.search(queries, n, Math.min(this.threads, queries.length));
    return queries.map((_, r) => neighboursOf(res.get(r)));
  }

  /**
   * Writes the whole index to `path`: one synchronous native call, ~0.3 s per 100k x 768 f32,
   * during which the event loop serves nothing. Only for a snapshot at shutdown; every other
   * snapshot is written by a graph thread (Collection.snapshot).
   */
  save(path: string): void {
    this.index.save(path);
  }
}
