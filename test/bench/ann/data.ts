// Clustered synthetic embeddings: unit vectors around random centres, with
// per-cluster spread, the shape real document embeddings have (many loose
// topics). Deterministic from the seed.
import { rng } from "../../support/random.js";

/** Standard normals, two per Box-Muller draw. */
function normals(rand: () => number, out: Float32Array): void {
  for (let i = 0; i < out.length; i += 2) {
    const u = Math.max(rand(), 1e-12);
    const r = Math.sqrt(-2 * Math.log(u));
    const th = 2 * Math.PI * rand();
    out[i] = r * Math.cos(th);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(th);
  }
}

function normalizeRow(m: Float32Array, row: number, dims: number): void {
  let s = 0;
  for (let j = 0; j < dims; j++) s += m[row * dims + j]! ** 2;
  const inv = 1 / (Math.sqrt(s) || 1);
  for (let j = 0; j < dims; j++) m[row * dims + j]! *= inv;
}

export interface Dataset {
  dims: number;
  base: Float32Array;
  queries: Float32Array;
  n: number;
  nq: number;
}

/**
 * `n` base vectors and `nq` held-out queries from the same mixture. `spread`
 * is the noise norm relative to the unit centre: ~1 gives neighbours at
 * cosine ~0.5-0.7, a hard, realistic set (easy sets flatter every index).
 */
export function clusteredDataset(n: number, nq: number, dims: number, clusters: number, seed = 1, spread = 1): Dataset {
  const rand = rng(seed);
  const centres = new Float32Array(clusters * dims);
  normals(rand, centres);
  for (let c = 0; c < clusters; c++) normalizeRow(centres, c, dims);
  const noise = new Float32Array(dims);
  const scale = spread / Math.sqrt(dims);
  const fill = (m: Float32Array, rows: number) => {
    for (let r = 0; r < rows; r++) {
      const c = Math.floor(rand() * clusters);
      normals(rand, noise);
      for (let j = 0; j < dims; j++) m[r * dims + j] = centres[c * dims + j]! + scale * noise[j]!;
      normalizeRow(m, r, dims);
    }
  };
  const base = new Float32Array(n * dims);
  const queries = new Float32Array(nq * dims);
  fill(base, n);
  fill(queries, nq);
  return { dims, base, queries, n, nq };
}

export function row(m: Float32Array, i: number, dims: number): Float32Array {
  return m.subarray(i * dims, (i + 1) * dims);
}
