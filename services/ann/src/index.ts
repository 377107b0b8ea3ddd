/** The native library exactly as this service loads it: the benchmark's bare in-process baseline. */
export * as usearch from "usearch";
export type {
  BackendFactory,
  BackendHit,
  BackendSearch,
  CollectionBackend,
  CollectionMeta,
  CollectionStats,
  NewPoint,
  StoredPoint,
} from "./backend.js";
export { Collection, type CollectionOptions } from "./collection.js";
export { type AnnConfig, annConfig, annConfigSchema } from "./config.js";
export { EmbeddedBackend } from "./embedded.js";
export { type RunningAnn, startAnn } from "./service.js";
