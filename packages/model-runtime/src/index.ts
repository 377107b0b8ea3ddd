export { BundleError } from "./errors.js";
export type { ExecutionProvider, SessionOptions } from "./infer.js";
export {
  checkServedDims,
  type Manifest,
  parseManifest,
  type ResolvedBundle,
  resolveBundle,
  spaceAt,
} from "./manifest.js";
export { describeBundle, EmbeddingModel, type LoadOptions, type ModelInfo } from "./model.js";
export { l2Normalize, truncateNormalize } from "./pool.js";
export type { TextKind, Tokenized } from "./tokenize.js";
