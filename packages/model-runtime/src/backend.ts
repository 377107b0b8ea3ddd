import type { Tokenized } from "./tokenize.js";

export type ExecutionProvider = "cpu" | "cuda";

export interface SessionOptions {
  /** In order of preference; the first that loads wins. */
  providers: ExecutionProvider[];
  /** Intra-op threads; 0 lets the runtime pick (one per physical core). */
  intraOpThreads: number;
  /**
   * Runs of at most this many padded tokens (rows x longest row) run on the calling thread, not
   * the backend's own: for a query encoder, whose single queries would otherwise pay the hop to
   * another thread and back (two thread wake-ups, a fixed share of a query's latency). 0 (the
   * default): every run on the backend's thread. Costs a second session of the graph in memory.
   */
  inlineMaxTokens?: number;
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

/** The graph file of a bundle and the output that holds the embedding (token states or pooled vectors). */
export interface GraphSpec {
  path: string;
  output: string;
}

/**
 * What runs a bundle's graph, as text-embeddings-inference's backends/core
 * `Backend`: token ids in, the raw output out. Everything around it
 * (tokenisation, batch formation, pooling, the Dense layer, normalisation) is
 * the same for every backend, so a second one (CUDA sessions with IO binding,
 * another runtime) is one file with a `BackendLoader`, passed as
 * `LoadOptions.backend`.
 *
 * `run` is one graph run of exactly the rows it is given, in order: batches are
 * formed by the caller, so what a caller measures is what ran.
 */
export interface Backend {
  /** Where the graph runs, reported in the model card. */
  readonly provider: ExecutionProvider;
  run(items: readonly Tokenized[]): Promise<RawOutput>;
  /** Frees the session; later runs fail, saying so. */
  release(): Promise<void>;
}

/**
 * Opens a graph on the first provider of `opts.providers` that loads, calling
 * `onFallback` for each one that does not; rejects when none loads.
 */
export type BackendLoader = (
  graph: GraphSpec,
  opts: SessionOptions,
  onFallback: (provider: ExecutionProvider, err: Error) => void,
) => Promise<Backend>;
