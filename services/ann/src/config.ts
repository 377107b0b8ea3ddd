import { commonConfig, env, loadConfig, upstreamConfig } from "@tandem/service-kit";
import { z } from "zod";

/**
 * Every limit the service enforces is a variable here, with its default. The
 * README's configuration table is this schema written out.
 */
export const annConfigSchema = z.object({
  ...commonConfig,
  PORT: env.port(50052, "gRPC port (0 picks a free one)"),
  DATA_DIR: env.string(".tandem/ann", "directory holding every collection (snapshots, WAL, payload store)"),
  ENCODER_ADDR: env.string("", "host:port of the QueryEncoder used by Search{text}; empty disables text search"),
  ENCODER_TIMEOUT_MS: env.int(5_000, 1, 600_000, "deadline of one QueryEncoder call"),
  ENCODER_INFO_TTL_MS: env.int(30_000, 0, 86_400_000, "how long the encoder's Info (its space) is cached"),
  ...upstreamConfig("ENCODER"),

  // Limits: a request over one of them is refused, never truncated.
  MAX_COLLECTIONS: env.int(64, 1, 10_000, "collections this server holds; past it RESOURCE_EXHAUSTED"),
  MAX_POINTS_PER_COLLECTION: env.int(
    50_000_000,
    1,
    4_000_000_000,
    "points in one collection; past it RESOURCE_EXHAUSTED",
  ),
  MIN_DIMS: env.int(2, 1, 65_536, "smallest vector dimension a collection may declare"),
  MAX_DIMS: env.int(4096, 1, 65_536, "largest vector dimension a collection may declare"),
  MAX_K: env.int(1000, 1, 100_000, "largest k of one search"),
  MAX_EF: env.int(4096, 1, 1_000_000, "largest ef (HNSW beam width) of one search"),
  MAX_POINTS_PER_REQUEST: env.int(
    1000,
    1,
    1_000_000,
    "points in one Upsert message, ids in one Delete or Get; past it INVALID_ARGUMENT",
  ),
  MAX_PAYLOAD_BYTES: env.int(64 * 1024, 2, 16 * 1024 * 1024, "UTF-8 bytes of one point's payload JSON"),
  MAX_ID_BYTES: env.int(512, 1, 1024, "UTF-8 bytes of one point id (LMDB keys are capped near 1.9 KB)"),
  MAX_NAME_BYTES: env.int(128, 1, 200, "length of a collection or alias name"),
  MAX_FILTER_CLAUSES: env.int(16, 1, 1024, "FieldMatch clauses in one search filter"),
  MAX_FILTER_VALUES: env.int(1024, 1, 1_000_000, "any_of values summed over one search filter"),
  FILTER_MAX_STRING_BYTES: env.int(
    256,
    1,
    65_536,
    "payload string values up to this size are indexed for filtering; a filter value may not be longer",
  ),

  // Search strategy.
  FILTER_EXACT_MAX: env.int(
    5_000,
    0,
    100_000_000,
    "a filtered search whose matching set is at most this many points scans that set exactly instead of HNSW",
  ),
  FILTER_MAX_OVERFETCH: env.int(
    20_000,
    1,
    100_000_000,
    "largest candidate list a filtered HNSW search grows to before it falls back to an exact scan",
  ),
  SEARCH_THREADS: env.int(0, 0, 256, "native threads for batched searches and rebuilds (0: one per CPU)"),
  SEARCH_BATCH_MAX: env.int(
    64,
    1,
    4096,
    "most concurrent searches of one collection answered by one batched native call (1: one at a time)",
  ),
  INDEX_REBUILD_CHURN: env.number(
    0.5,
    0,
    1000,
    "rebuild a collection's graph on a worker thread once the points replaced or deleted since it was built reach this share of its points; 0: never",
  ),
  INDEX_REBUILD_MIN_POINTS: env.int(
    1_000,
    1,
    4_000_000_000,
    "collections with fewer points are not rebuilt automatically",
  ),

  // Durability.
  SNAPSHOT_INTERVAL_MS: env.int(
    60_000,
    0,
    86_400_000,
    "snapshot a collection with new writes this often; 0: never by time",
  ),
  SNAPSHOT_WAL_BYTES: env.int(
    256 * 1024 * 1024,
    0,
    Number.MAX_SAFE_INTEGER,
    "snapshot a collection once its WAL passes this size; 0: never by size",
  ),
  SNAPSHOT_ON_SHUTDOWN: env.bool(true, "take a snapshot of every changed collection on a clean shutdown"),
  FAULT_SNAPSHOT_STALL_MS: env.int(
    0,
    0,
    600_000,
    "testing only: pause inside each snapshot (index temp file written, not yet renamed) so a crash test can kill there",
  ),
});

export type AnnConfig = z.infer<typeof annConfigSchema>;

/** Config from the environment, or from an explicit map (tests). */
export function annConfig(vars: NodeJS.ProcessEnv = process.env): AnnConfig {
  return loadConfig(annConfigSchema, vars);
}
