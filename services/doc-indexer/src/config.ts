import { availableParallelism } from "node:os";
import type { ExecutionProvider } from "@tandem/model-runtime";
import { commonConfig, env, loadConfig, upstreamConfig } from "@tandem/service-kit";
import { z } from "zod";

const providers = z
  .string()
  .default("cuda,cpu")
  .transform((s, ctx) => {
    const list = s
      .split(",")
      .map((p) => p.trim())
      .filter(Boolean);
    for (const p of list) {
      if (p !== "cuda" && p !== "cpu") {
        ctx.addIssue({ code: "custom", message: `unknown execution provider "${p}" (cuda | cpu)` });
        return z.NEVER;
      }
    }
    if (list.length === 0) {
      ctx.addIssue({ code: "custom", message: "at least one execution provider" });
      return z.NEVER;
    }
    return list as ExecutionProvider[];
  })
  .describe("onnxruntime execution providers in order of preference; the first that loads is used");

const sentinels = z
  .string()
  .default("")
  .transform((s, ctx) => {
    const list: Array<{ host: string; port: number }> = [];
    for (const item of s.split(",").map((x) => x.trim())) {
      if (!item) continue;
      const at = item.lastIndexOf(":");
      const port = Number(item.slice(at + 1));
      if (at <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
        ctx.addIssue({ code: "custom", message: `"${item}" is not host:port` });
        return z.NEVER;
      }
      list.push({ host: item.slice(0, at), port });
    }
    return list;
  })
  .describe(
    "comma-separated host:port of Redis Sentinels; when set, the master named REDIS_SENTINEL_NAME is found through them and REDIS_URL gives only its password and db",
  );

export const indexerConfigSchema = z.object({
  ...commonConfig,
  PORT: env.port(50053, "gRPC port of the producer API (0 picks a free one)"),
  REDIS_URL: env.string("redis://127.0.0.1:6379", "Redis holding the job queue, content hashes and reindex state"),
  REDIS_SENTINELS: sentinels,
  REDIS_SENTINEL_NAME: env.string("mymaster", "master group name the Sentinels know (with REDIS_SENTINELS)"),
  REDIS_CONNECT_TIMEOUT_MS: env.int(5000, 100, 600_000, "how long one connection attempt to Redis may take"),
  REDIS_COMMAND_TIMEOUT_MS: env.int(
    5000,
    100,
    600_000,
    "API side: a Redis command unanswered this long fails, and its RPC answers UNAVAILABLE",
  ),
  REDIS_RECONNECT_MAX_MS: env.int(
    2000,
    100,
    60_000,
    "longest pause between reconnection attempts to Redis (the delay doubles from 100 ms up to this)",
  ),
  REQUIRE_DURABLE_QUEUE: env.bool(
    false,
    "refuse to start unless Redis has AOF persistence on (appendonly yes); false: warn only",
  ),
  QUEUE_PREFIX: env.string("tandem", "prefix of every Redis key this service writes (one per deployment / test run)"),
  FILE_ROOT: env.string("/", "SubmitFile only reads files under this directory"),
  ANN_ADDR: env.string("127.0.0.1:50052", "host:port of the ANN service the vectors are written to"),
  ...upstreamConfig("ANN"),
  ANN_TIMEOUT_MS: env.int(60_000, 100, 3_600_000, "deadline of one ANN call (an Upsert stream of one flush)"),
  TEACHER_BUNDLE_DIR: env.string(".cache/models/all-mpnet-base-v2", "model bundle directory of the teacher"),
  TEACHER_DIMS: env.int(
    0,
    0,
    65_536,
    "serve the teacher at this Matryoshka size its manifest declares, in a space named for it (embeddinggemma-300m/256); 0: its full width",
  ),
  PROVIDERS: providers,
  INTRA_OP_THREADS: env.int(
    Math.min(4, availableParallelism()),
    0,
    256,
    "onnxruntime intra-op threads of the teacher; 0 lets onnxruntime pick (one per physical core)",
  ),
  RUN_WORKER: env.bool(true, "also run a queue worker inside the API process (false: API only, workers elsewhere)"),
  WORKER_CONCURRENCY: env.int(1, 1, 64, "jobs one worker process runs at once (they share one teacher session)"),
  MAX_BATCH_TOKENS: env.int(
    8192,
    16,
    1 << 22,
    "token budget of one inference batch, as padded tokens (rows x longest)",
  ),
  MAX_BATCH_DOCS: env.int(64, 1, 4096, "most documents in one inference batch"),
  JOB_MAX_DOCS: env.int(512, 1, 100_000, "documents per queued job: a submission is split into jobs of this size"),
  UPSERT_FLUSH_DOCS: env.int(
    256,
    1,
    100_000,
    "documents per acknowledged Upsert stream; progress and content hashes are committed at each flush",
  ),
  UPSERT_MESSAGE_POINTS: env.int(64, 1, 10_000, "points per message inside one Upsert stream"),
  MAX_DOCS_PER_SUBMISSION: env.int(
    100_000,
    1,
    10_000_000,
    "documents in one Submit / SubmitFile; past it RESOURCE_EXHAUSTED",
  ),
  MAX_SUBMISSION_BYTES: env.int(
    256 * 1024 * 1024,
    1024,
    4 * 1024 * 1024 * 1024,
    "UTF-8 bytes of texts and payloads in one Submit stream; past it RESOURCE_EXHAUSTED",
  ),
  MAX_TEXT_BYTES: env.int(
    32 * 1024,
    1,
    16 * 1024 * 1024,
    "UTF-8 bytes of one document's text; larger ones are rejected",
  ),
  MAX_PAYLOAD_BYTES: env.int(
    64 * 1024,
    2,
    16 * 1024 * 1024,
    "UTF-8 bytes of the payload stored with a vector (payload_json plus the text): at most the ANN service's MAX_PAYLOAD_BYTES",
  ),
  MAX_ID_BYTES: env.int(512, 1, 65536, "UTF-8 bytes of one document id: at most the ANN service's MAX_ID_BYTES"),
  MAX_QUEUED_JOBS: env.int(10_000, 1, 10_000_000, "jobs waiting + delayed in the queue; past it RESOURCE_EXHAUSTED"),
  JOB_ATTEMPTS: env.int(5, 1, 100, "attempts per job before it fails and is copied to the dead-letter queue"),
  BACKOFF_MS: env.int(1000, 0, 3_600_000, "first retry delay; doubled on every further attempt"),
  LOCK_DURATION_MS: env.int(30_000, 1000, 3_600_000, "job lock; a worker that stops renewing it is considered dead"),
  STALLED_INTERVAL_MS: env.int(30_000, 500, 3_600_000, "how often workers look for jobs whose worker died"),
  MAX_STALLED_COUNT: env.int(3, 0, 1000, "times a job may be recovered from a dead worker before it fails"),
  RATE_LIMIT_JOBS: env.int(0, 0, 1_000_000, "jobs started per RATE_LIMIT_WINDOW_MS across all workers; 0: unlimited"),
  RATE_LIMIT_WINDOW_MS: env.int(1000, 1, 3_600_000, "window of RATE_LIMIT_JOBS"),
  KEEP_JOBS: env.int(10_000, 1, 10_000_000, "finished jobs kept in Redis for JobStatus / ListJobs"),
  REINDEX_MIN_RECALL: env.number(
    0.2,
    0,
    1,
    "parity recall@10 (new vs old generation) below which the alias is not swapped",
  ),
  PARITY_QUERIES: env.int(50, 1, 10_000, "queries in the parity check (file lines or sampled documents)"),
});

export type IndexerConfig = z.infer<typeof indexerConfigSchema>;

/** Config from the environment, or from an explicit map (tests). */
export function indexerConfig(vars: NodeJS.ProcessEnv = process.env): IndexerConfig {
  return loadConfig(indexerConfigSchema, vars);
}

/** The width the configured teacher serves at: undefined is its full width. */
export function teacherDims(config: Pick<IndexerConfig, "TEACHER_DIMS">): number | undefined {
  return config.TEACHER_DIMS === 0 ? undefined : config.TEACHER_DIMS;
}
