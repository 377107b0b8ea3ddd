import { availableParallelism } from "node:os";
import { commonConfig, env, loadConfig } from "@tandem/service-kit";
import { z } from "zod";

export const encoderConfigSchema = z.object({
  ...commonConfig,
  MODEL_DIR: env.string(".cache/models/leaf-minilm-mpnet", "model bundle directory of the student"),
  MODEL_DIMS: env.int(
    0,
    0,
    65_536,
    "serve the model at this Matryoshka size its manifest declares, in a space named for it (pair with the indexer's TEACHER_DIMS); 0: its full width",
  ),
  PORT: env.port(50051, "gRPC port (0 picks a free one)"),
  HTTP_PORT: env.port(
    0,
    "port of the OpenAI-compatible POST /v1/embeddings (HTTP, HTTPS with TLS_CERT_FILE; same HOST, tokens, limits); 0: off",
  ),
  MAX_HTTP_BODY_BYTES: env.int(
    2 * 1024 * 1024,
    1024,
    1 << 30,
    "largest HTTP request body accepted on HTTP_PORT; past it 413 (checked while reading)",
  ),
  MAX_BATCH_TOKENS: env.int(
    8192,
    16,
    1 << 20,
    "token budget of one inference batch, counted as padded tokens (rows x longest row)",
  ),
  MAX_BATCH_REQUESTS: env.int(32, 1, 4096, "most requests merged into one inference batch"),
  MAX_QUEUED_REQUESTS: env.int(256, 1, 1 << 20, "requests waiting for inference; past it RESOURCE_EXHAUSTED"),
  MAX_TEXTS_PER_REQUEST: env.int(64, 1, 4096, "texts in one Encode request"),
  MAX_TEXT_BYTES: env.int(8192, 1, 1 << 20, "UTF-8 bytes of one text"),
  INTRA_OP_THREADS: env.int(
    Math.min(4, availableParallelism()),
    0,
    256,
    "onnxruntime intra-op threads; 0 lets onnxruntime pick",
  ),
  INLINE_MAX_TOKENS: env.int(
    0,
    0,
    1 << 20,
    "batches of at most this many padded tokens run on the event loop instead of the inference thread, saving the hop to it and back (~0.5 ms a lone query) but serialising I/O and inference on one core, which cuts throughput under concurrent load; 0: every batch on the inference thread",
  ),
  CACHE_ENTRIES: env.int(10_000, 0, 10_000_000, "LRU cache of (model, kind, text) -> vector; 0 disables it"),
});

export type EncoderConfig = z.infer<typeof encoderConfigSchema>;

/** Config from the environment, or from an explicit map (tests). */
export function encoderConfig(vars: NodeJS.ProcessEnv = process.env): EncoderConfig {
  return loadConfig(encoderConfigSchema, vars);
}
