import { EmbeddingModel } from "@tandem/model-runtime";
import { QueryEncoderService } from "@tandem/proto";
import {
  bind,
  createLogger,
  type Logger,
  type Meter,
  serverSecurity,
  startMetrics,
  startServer,
} from "@tandem/service-kit";
import { Batcher } from "./batcher.js";
import { EmbeddingCache } from "./cache.js";
import type { EncoderConfig } from "./config.js";
import { Embedder } from "./embed.js";
import { encoderHandlers } from "./handlers.js";
import { type RunningHttpApi, startHttpApi } from "./http.js";
import { requestLimits } from "./validate.js";

export interface RunningEncoder {
  port: number;
  /** The OpenAI-compatible HTTP API's port, or 0 when HTTP_PORT is off. */
  httpPort: number;
  model: EmbeddingModel;
  log: Logger;
  stop(): Promise<void>;
}

/** Texts of typical query length for the warm-up run before the server reports SERVING. */
const WARM_UP = [
  "what is the effect of vitamin d on bone density",
  "how do vaccines train the immune system",
  "symptoms of iron deficiency",
  "does exercise lower blood pressure",
];

export async function startQueryEncoder(
  config: EncoderConfig,
  deps: { log?: Logger; meter?: Meter } = {},
): Promise<RunningEncoder> {
  const log = deps.log ?? createLogger("query-encoder", config.LOG_LEVEL);
  const metrics = deps.meter ? null : await startMetrics("query-encoder", config.METRICS_PORT, config.HOST);
  const meter = deps.meter ?? metrics!.meter;

  const model = await EmbeddingModel.load(config.MODEL_DIR, {
    providers: ["cpu"],
    intraOpThreads: config.INTRA_OP_THREADS,
    inlineMaxTokens: config.INLINE_MAX_TOKENS,
    dims: config.MODEL_DIMS === 0 ? undefined : config.MODEL_DIMS,
  });
  const batcher = new Batcher(
    (items) => model.embedBatch(items),
    {
      maxBatchTokens: config.MAX_BATCH_TOKENS,
      maxBatchRequests: config.MAX_BATCH_REQUESTS,
      maxQueuedRequests: config.MAX_QUEUED_REQUESTS,
    },
    meter,
  );
  const cache = new EmbeddingCache(config.CACHE_ENTRIES, model.info.bundleSha256, meter);
  const embedder = new Embedder(model, batcher, cache);
  const security = serverSecurity(config);

  const server = await startServer({
    services: [bind("tandem.v1.QueryEncoder", QueryEncoderService, encoderHandlers(embedder, config))],
    host: config.HOST,
    port: config.PORT,
    maxMessageBytes: config.MAX_MESSAGE_BYTES,
    log,
    meter,
    security,
  });
  let http: RunningHttpApi | null = null;
  if (config.HTTP_PORT > 0) {
    http = await startHttpApi({
      host: config.HOST,
      port: config.HTTP_PORT,
      embedder,
      limits: requestLimits(config),
      maxBodyBytes: config.MAX_HTTP_BODY_BYTES,
      tokens: security.tokens,
      tls: config,
      log,
      meter,
    }).catch(async (err: unknown) => {
      await server.shutdown(0);
      await model.release();
      throw err;
    });
  }

  // Readiness only after a real batch went through the same path requests take.
  await batcher.submit(
    WARM_UP.map((t) => model.tokenize(t, "query")),
    new AbortController().signal,
    Number.POSITIVE_INFINITY,
  );
  server.setServing(true);
  http?.setServing(true);
  log.info(
    {
      port: server.port,
      httpPort: http?.port ?? 0,
      model: model.info.bundleName,
      space: model.info.space,
      dims: model.info.dims,
      metricsPort: config.METRICS_PORT,
    },
    "query-encoder serving",
  );

  return {
    port: server.port,
    httpPort: http?.port ?? 0,
    model,
    log,
    async stop() {
      await Promise.all([server.shutdown(config.SHUTDOWN_GRACE_MS), http?.shutdown(config.SHUTDOWN_GRACE_MS)]);
      await batcher.idle();
      await model.release();
      await metrics?.shutdown();
    },
  };
}
