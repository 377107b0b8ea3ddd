import type { RawOutput } from "./backend.js";

/**
 * The pooling modes, listed once: the manifest schema accepts these, the
 * sentence-transformers reader maps to them and poolTokens implements each (as
 * text-embeddings-inference's backends/core `Pool`). A new mode is a name here
 * and a case in poolRow, which the type checker then asks for.
 */
export const POOLINGS = ["mean", "cls"] as const;
export type Pooling = (typeof POOLINGS)[number];

/** Token outputs [B,T,H] to one vector per row. */
export function poolTokens(raw: RawOutput, pooling: Pooling): Float32Array[] {
  const out: Float32Array[] = [];
  for (let b = 0; b < raw.batch; b++) out.push(poolRow(raw, b, pooling));
  return out;
}

function poolRow(raw: RawOutput, b: number, pooling: Pooling): Float32Array {
  const { data, seqLen, width, mask } = raw;
  const v = new Float32Array(width);
  const rowBase = b * seqLen * width;
  switch (pooling) {
    case "cls":
      // The first token; right padding never moves it.
      v.set(data.subarray(rowBase, rowBase + width));
      return v;
    case "mean": {
      // Over real tokens only: padded positions carry states too.
      let n = 0;
      for (let t = 0; t < seqLen; t++) {
        if (mask[b * seqLen + t] === 0) continue;
        n++;
        const base = rowBase + t * width;
        for (let h = 0; h < width; h++) v[h] = (v[h] as number) + (data[base + h] as number);
      }
      const inv = n > 0 ? 1 / n : 0;
      for (let h = 0; h < width; h++) v[h] = (v[h] as number) * inv;
      return v;
    }
  }
}

/** Rows of an already pooled output [B,D]. */
export function splitPooled(raw: RawOutput): Float32Array[] {
  const out: Float32Array[] = [];
  for (let b = 0; b < raw.batch; b++) out.push(raw.data.slice(b * raw.width, (b + 1) * raw.width));
  return out;
}

/** y = W x (+ b), W row-major [out][in]. */
export class Dense {
  constructor(
    private readonly weight: Float32Array,
    private readonly bias: Float32Array | null,
    readonly inDims: number,
    readonly outDims: number,
  ) {}

  apply(x: Float32Array): Float32Array {
    const y = new Float32Array(this.outDims);
    for (let o = 0; o < this.outDims; o++) {
      let acc = this.bias ? (this.bias[o] as number) : 0;
      const base = o * this.inDims;
      for (let i = 0; i < this.inDims; i++) acc += (this.weight[base + i] as number) * (x[i] as number);
      y[o] = acc;
    }
    return y;
  }
}

/** The first `dims` of a vector as a unit vector: a Matryoshka prefix, which is only a space once re-normalised. */
export function truncateNormalize(v: Float32Array, dims: number): Float32Array {
  return l2Normalize(v.slice(0, dims));
}

export function l2Normalize(v: Float32Array): Float32Array {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += (v[i] as number) * (v[i] as number);
  const inv = sum > 0 ? 1 / Math.sqrt(sum) : 0;
  for (let i = 0; i < v.length; i++) v[i] = (v[i] as number) * inv;
  return v;
}
