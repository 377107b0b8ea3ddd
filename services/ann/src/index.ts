/** The native library exactly as this service loads it: the benchmark's bare in-process baseline. */
export * as usearch from "usearch";
export { Collection, type CollectionMeta, type CollectionOptions, type NewPoint } from "./collection.js";
export { type AnnConfig, annConfig, annConfigSchema } from "./config.js";
export { type RunningAnn, startAnn } from "./service.js";
