import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";
import * as ort from "onnxruntime-node";

interface BareManifest {
  pooling: "mean" | "cls";
  normalize: boolean;
  max_tokens: number;
  query_prefix: string;
  onnx: { file: string; output: string };
}

/**
 * An independent, in-process reference embedder: onnxruntime + tokenizer +
 * pooling written out plainly, sharing no code with packages/model-runtime.
 * Tests compare the service against it; benchmarks use it as the floor.
 */
/** Right-padded int64 feeds for a batch of token-id rows (token_type_ids as zeros when the graph takes them). */
export function paddedFeeds(session: ort.InferenceSession, rows: number[][]): Record<string, ort.Tensor> {
  const b = rows.length;
  const t = Math.max(...rows.map((r) => r.length));
  const ids = new BigInt64Array(b * t);
  const mask = new BigInt64Array(b * t);
  for (const [i, r] of rows.entries()) {
    for (const [j, id] of r.entries()) {
      ids[i * t + j] = BigInt(id);
      mask[i * t + j] = 1n;
    }
  }
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor("int64", ids, [b, t]),
    attention_mask: new ort.Tensor("int64", mask, [b, t]),
  };
  if (session.inputNames.includes("token_type_ids")) {
    feeds.token_type_ids = new ort.Tensor("int64", new BigInt64Array(b * t), [b, t]);
  }
  return feeds;
}

export class BareEmbedder {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly tokenizer: Tokenizer,
    private readonly m: BareManifest,
  ) {}

  static async load(dir: string, threads = 0): Promise<BareEmbedder> {
    const m = JSON.parse(readFileSync(`${dir}/manifest.json`, "utf8")) as BareManifest;
    const session = await ort.InferenceSession.create(`${dir}/${m.onnx.file}`, {
      graphOptimizationLevel: "all",
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
    });
    const tokenizer = new Tokenizer(JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8")) as object, {});
    return new BareEmbedder(session, tokenizer, m);
  }

  tokenize(text: string): number[] {
    const ids = this.tokenizer.encode(this.m.query_prefix + text).ids;
    return ids.length <= this.m.max_tokens ? ids : [...ids.slice(0, this.m.max_tokens - 1), ids[ids.length - 1]!];
  }

  async embedIds(rows: number[][]): Promise<Float32Array[]> {
    const t = Math.max(...rows.map((r) => r.length));
    const out = (await this.session.run(paddedFeeds(this.session, rows)))[this.m.onnx.output] as ort.Tensor;
    const h = out.dims[2] as number;
    const data = out.data as Float32Array;
    return rows.map((r, i) => {
      const v = new Float32Array(h);
      const n = this.m.pooling === "cls" ? 1 : r.length;
      for (let j = 0; j < n; j++) for (let k = 0; k < h; k++) v[k]! += data[(i * t + j) * h + k]!;
      let norm = 0;
      for (let k = 0; k < h; k++) {
        v[k]! /= n;
        norm += v[k]! * v[k]!;
      }
      if (this.m.normalize) for (let k = 0; k < h; k++) v[k]! /= Math.sqrt(norm);
      return v;
    });
  }

  embed(texts: string[]): Promise<Float32Array[]> {
    return this.embedIds(texts.map((t) => this.tokenize(t)));
  }
}

export function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}
