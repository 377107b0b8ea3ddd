import type { EmbeddingModel } from "@tandem/model-runtime";
import { type EncodeResponse, encodeVector, type InfoResponse, type QueryEncoderService } from "@tandem/proto";
import type { Handlers } from "@tandem/service-kit";
import type { Batcher } from "./batcher.js";
import type { CachedEmbedding, EmbeddingCache } from "./cache.js";
import type { EncoderConfig } from "./config.js";
import { validateEncode } from "./validate.js";

/** validate -> cache -> tokenize -> batch -> infer/pool (in the batcher's run) -> respond */
export function encoderHandlers(
  model: EmbeddingModel,
  batcher: Batcher,
  cache: EmbeddingCache,
  config: EncoderConfig,
): Handlers<typeof QueryEncoderService> {
  const limits = { maxTexts: config.MAX_TEXTS_PER_REQUEST, maxTextBytes: config.MAX_TEXT_BYTES };
  const { modelId, space, dims } = model.info;

  return {
    async encode(req, ctx): Promise<EncodeResponse> {
      const kind = validateEncode(req, limits);
      const results: Array<CachedEmbedding | undefined> = req.texts.map((t) => cache.get(kind, t));
      const misses = results.flatMap((r, i) => (r === undefined ? [i] : []));
      if (misses.length > 0) {
        const tokenized = misses.map((i) => model.tokenize(req.texts[i] as string, kind));
        const vectors = await batcher.submit(tokenized, ctx.signal, ctx.deadline);
        misses.forEach((i, j) => {
          const tok = tokenized[j]!;
          const entry = { vector: vectors[j]!, tokens: tok.ids.length, truncated: tok.truncated };
          results[i] = entry;
          cache.set(kind, req.texts[i] as string, entry);
        });
      }
      return {
        embeddings: results.map((r) => ({
          vector: encodeVector(r!.vector),
          tokens: r!.tokens,
          truncated: r!.truncated,
        })),
        modelId,
        space,
        dims,
      };
    },

    async info(): Promise<InfoResponse> {
      return {
        model: { ...model.info },
        limits: {
          maxTextsPerRequest: config.MAX_TEXTS_PER_REQUEST,
          maxTextBytes: config.MAX_TEXT_BYTES,
          maxBatchTokens: config.MAX_BATCH_TOKENS,
          maxBatchRequests: config.MAX_BATCH_REQUESTS,
          maxQueuedRequests: config.MAX_QUEUED_REQUESTS,
        },
      };
    },
  };
}
