import * as ort from "onnxruntime-node";
import type { Tokenized } from "./tokenize.js";

export type ExecutionProvider = "cpu" | "cuda";

export interface SessionOptions {
  /** In order of preference; the first that loads wins. */
  providers: ExecutionProvider[];
  /** ORT intra-op threads; 0 lets ORT pick (one per physical core). */
  intraOpThreads: number;
}

/** The graph's raw output for a padded batch. */
export interface RawOutput {
  data: Float32Array;
  batch: number;
  seqLen: number;
  /** Width of the output: hidden size for token outputs, dims for pooled. */
  width: number;
  /** Attention mask used for the batch, row-major [batch][seqLen]. */
  mask: Uint8Array;
}

/**
 * The one backend: an onnxruntime session over a padded int64 batch. Kept
 * behind this small interface so the batcher and the pooling never see ORT.
 */
export class OrtBackend {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly provider: ExecutionProvider,
    private readonly outputName: string,
    private readonly needsTokenTypes: boolean,
  ) {}

  static async load(
    onnxPath: string,
    outputName: string,
    opts: SessionOptions,
    onFallback: (provider: ExecutionProvider, err: Error) => void,
  ): Promise<OrtBackend> {
    let lastError: Error | undefined;
    for (const provider of opts.providers) {
      try {
        const session = await ort.InferenceSession.create(onnxPath, {
          executionProviders: [provider],
          graphOptimizationLevel: "all",
          intraOpNumThreads: opts.intraOpThreads,
          interOpNumThreads: 1,
          executionMode: "sequential",
        });
        if (!session.outputNames.includes(outputName)) {
          throw new Error(`graph has no output "${outputName}" (outputs: ${session.outputNames.join(", ")})`);
        }
        for (const required of ["input_ids", "attention_mask"]) {
          if (!session.inputNames.includes(required)) {
            throw new Error(`graph has no input "${required}" (inputs: ${session.inputNames.join(", ")})`);
          }
        }
        return new OrtBackend(session, provider, outputName, session.inputNames.includes("token_type_ids"));
      } catch (err) {
        lastError = err as Error;
        onFallback(provider, lastError);
      }
    }
    throw lastError ?? new Error("no execution provider configured");
  }

  async run(items: readonly Tokenized[]): Promise<RawOutput> {
    const batch = items.length;
    let seqLen = 0;
    for (const it of items) seqLen = Math.max(seqLen, it.ids.length);
    const ids = new BigInt64Array(batch * seqLen);
    const mask64 = new BigInt64Array(batch * seqLen);
    const mask = new Uint8Array(batch * seqLen);
    for (let b = 0; b < batch; b++) {
      const row = (items[b] as Tokenized).ids;
      const base = b * seqLen;
      for (let t = 0; t < row.length; t++) {
        ids[base + t] = BigInt(row[t] as number);
        mask64[base + t] = 1n;
        mask[base + t] = 1;
      }
    }
    const dims = [batch, seqLen];
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", ids, dims),
      attention_mask: new ort.Tensor("int64", mask64, dims),
    };
    if (this.needsTokenTypes) feeds.token_type_ids = new ort.Tensor("int64", new BigInt64Array(batch * seqLen), dims);
    const out = await this.session.run(feeds, [this.outputName]);
    const tensor = out[this.outputName] as ort.Tensor;
    const data = tensor.data as Float32Array;
    const width = tensor.dims[tensor.dims.length - 1] as number;
    for (const t of Object.values(out)) t.dispose();
    return { data, batch, seqLen, width, mask };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
