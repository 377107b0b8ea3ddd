import { exactSearch } from "usearch";
import { type MetricName, type Neighbours, usearchMetric } from "./hnsw.js";

/**
 * Brute-force search over an explicit set of vectors: the `exact` search
 * option, the fallback of a selective filter, and the ground truth the tests
 * and the benchmark compare HNSW against. Uses usearch's SIMD distance kernels
 * (same distance definitions as the index, so scores are comparable).
 */
export function exactTopK(
  matrix: Float32Array,
  keys: ArrayLike<number>,
  dims: number,
  query: Float32Array,
  k: number,
  metric: MetricName,
): Neighbours {
  const n = keys.length;
  if (n === 0 || k === 0) return { keys: [], distances: [] };
  const wanted = Math.min(k, n);
  const res = exactSearch(matrix.subarray(0, n * dims), query, dims, wanted, usearchMetric(metric), 1);
  const out: Neighbours = { keys: [], distances: [] };
  for (let i = 0; i < res.keys.length && i < wanted; i++) {
    const row = Number(res.keys[i]);
    if (row >= n) break;
    out.keys.push(keys[row]!);
    out.distances.push(res.distances[i]!);
  }
  return out;
}
