import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Backend, BackendLoader, ExecutionProvider, SessionOptions } from "./backend.js";
import { BundleError } from "./errors.js";
import { loadOrtBackend } from "./infer.js";
import { checkServedDims, type Manifest, type ResolvedBundle, resolveBundle, spaceAt } from "./manifest.js";
import { Dense, l2Normalize, type Pooling, poolTokens, splitPooled, truncateNormalize } from "./pool.js";
import { type TextKind, TextTokenizer, type Tokenized } from "./tokenize.js";

export interface ModelInfo {
  modelId: string;
  bundleName: string;
  role: "student" | "teacher";
  space: string;
  dims: number;
  maxTokens: number;
  precision: string;
  pooling: Pooling;
  normalize: boolean;
  queryPrefix: string;
  documentPrefix: string;
  bundleSha256: string;
  executionProvider: ExecutionProvider;
}

export interface LoadOptions extends Partial<SessionOptions> {
  /**
   * Serve the first `dims` of each vector, re-normalised: a Matryoshka size the
   * manifest declares. The model's space becomes the truncated space (spaceAt).
   * Default: the bundle's full width.
   */
  dims?: number;
  /** Called when a preferred execution provider fails to load and the next is tried. */
  onProviderFallback?: (provider: ExecutionProvider, err: Error) => void;
  /** What runs the graph. Default: onnxruntime (loadOrtBackend). */
  backend?: BackendLoader;
}

/**
 * A model bundle ready to embed: tokenize -> infer -> pool -> (dense) -> normalise.
 * Tokenisation is exposed apart from inference so a batcher can budget tokens
 * before it runs the graph. Batch formation is not here: each caller forms the
 * batches it runs (the encoder's Batcher, the indexer's formBatches), because
 * only the caller knows its workload (a queue of short queries against a whole
 * job of documents to sort), and a batch re-split here would make every count
 * the caller keeps describe runs that never happened.
 */
export class EmbeddingModel {
  private constructor(
    readonly bundle: ResolvedBundle,
    readonly info: ModelInfo,
    private readonly tokenizer: TextTokenizer,
    private readonly backend: Backend,
    private readonly dense: Dense | null,
  ) {}

  static async load(dir: string, opts: LoadOptions = {}): Promise<EmbeddingModel> {
    const bundle = await resolveBundle(dir);
    const m = bundle.manifest;
    const tokenizer = new TextTokenizer(bundle.tokenizerPath, m.max_tokens, {
      query: m.query_prefix,
      document: m.document_prefix,
    });
    const dims = opts.dims ?? m.dims;
    const refused = checkServedDims(m, dims);
    if (refused) throw new BundleError(dir, refused);
    const dense = m.dense ? loadDense(dir, m.dense) : null;
    let backend: Backend;
    try {
      backend = await (opts.backend ?? loadOrtBackend)(
        { path: bundle.onnxPath, output: m.onnx.output },
        {
          providers: opts.providers ?? ["cpu"],
          intraOpThreads: opts.intraOpThreads ?? 0,
          inlineMaxTokens: opts.inlineMaxTokens ?? 0,
        },
        opts.onProviderFallback ?? (() => {}),
      );
    } catch (err) {
      throw new BundleError(dir, `cannot load ${m.onnx.file}: ${(err as Error).message}`);
    }
    const info: ModelInfo = { ...describeBundle(bundle, dims), executionProvider: backend.provider };
    const model = new EmbeddingModel(bundle, info, tokenizer, backend, dense);
    await model.checkGraphWidth(m);
    return model;
  }

  tokenize(text: string, kind: TextKind): Tokenized {
    return this.tokenizer.tokenize(text, kind);
  }

  /**
   * Embeds one batch as the caller formed it: one graph run of exactly these
   * rows, each padded to the longest, one vector per row in order.
   */
  async embedBatch(items: readonly Tokenized[]): Promise<Float32Array[]> {
    const m = this.bundle.manifest;
    const raw = await this.backend.run(items);
    let vectors = m.onnx.output_kind === "token" ? poolTokens(raw, m.pooling) : splitPooled(raw);
    if (this.dense) {
      const dense = this.dense;
      vectors = vectors.map((v) => dense.apply(v));
    }
    // Served at a Matryoshka size: cut before normalising, so the prefix is a unit vector.
    const cut = this.info.dims;
    if (cut !== m.dims) return vectors.map((v) => truncateNormalize(v, cut));
    if (m.normalize) for (const v of vectors) l2Normalize(v);
    return vectors;
  }

  /**
   * Tokenizes and embeds `texts` as one batch (one graph run): for callers with
   * a handful of texts, or that formed the batch themselves.
   */
  async embed(texts: readonly string[], kind: TextKind): Promise<Float32Array[]> {
    return this.embedBatch(texts.map((t) => this.tokenize(t, kind)));
  }

  async release(): Promise<void> {
    await this.backend.release();
  }

  /** One real inference at load: proves the graph runs and its width matches the manifest. */
  private async checkGraphWidth(m: Manifest): Promise<void> {
    const raw = await this.backend.run([this.tokenize("warm-up", "query")]);
    const expected = m.onnx.output_kind === "token" ? m.hidden_size : m.dense ? m.dense.in : m.dims;
    if (raw.width !== expected) {
      await this.backend.release();
      throw new BundleError(
        this.bundle.dir,
        `dimension mismatch: the graph's ${m.onnx.output} has width ${raw.width}, the manifest says ${expected}`,
      );
    }
  }
}

/**
 * What a bundle is, read from its manifest alone, served at `dims` (its full
 * width or a Matryoshka size): everything in ModelInfo except where it runs.
 * A process that only reads the manifest (the indexer's API without a worker)
 * describes the teacher with the same fields a loaded model reports.
 */
export function describeBundle(bundle: ResolvedBundle, dims: number): Omit<ModelInfo, "executionProvider"> {
  const m = bundle.manifest;
  return {
    modelId: m.model_id,
    bundleName: m.name,
    role: m.role,
    space: spaceAt(m, dims),
    dims,
    maxTokens: m.max_tokens,
    precision: m.precision,
    pooling: m.pooling,
    normalize: m.normalize,
    queryPrefix: m.query_prefix,
    documentPrefix: m.document_prefix,
    bundleSha256: bundle.sha256,
  };
}

function loadDense(dir: string, spec: NonNullable<Manifest["dense"]>): Dense {
  const buf = readFileSync(join(dir, spec.file));
  const weights = spec.in * spec.out;
  const expected = (weights + (spec.bias ? spec.out : 0)) * 4;
  if (buf.byteLength !== expected) {
    throw new BundleError(
      dir,
      `${spec.file} has ${buf.byteLength} bytes, expected ${expected} for [${spec.out}x${spec.in}]`,
    );
  }
  const all = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  return new Dense(all.subarray(0, weights), spec.bias ? all.subarray(weights) : null, spec.in, spec.out);
}
