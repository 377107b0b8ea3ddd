import { type EncodeResponse, encodeVector, type InfoResponse, type QueryEncoderService } from "@tandem/proto";
import type { Handlers } from "@tandem/service-kit";
import type { EncoderConfig } from "./config.js";
import type { Embedder } from "./embed.js";
import { requestLimits, validateEncode } from "./validate.js";

/** validate -> embed (cache -> tokenize -> batch -> infer/pool) -> respond */
export function encoderHandlers(embedder: Embedder, config: EncoderConfig): Handlers<typeof QueryEncoderService> {
  const limits = requestLimits(config);
  const { model } = embedder;
  const { modelId, space, dims } = model.info;

  return {
    async encode(req, ctx): Promise<EncodeResponse> {
      const kind = validateEncode(req, limits);
      const results = await embedder.embed(req.texts, kind, ctx.signal, ctx.deadline);
      return {
        embeddings: results.map((r) => ({
          vector: encodeVector(r.vector),
          tokens: r.tokens,
          truncated: r.truncated,
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
