export type {
  Backend,
  BackendLoader,
  ExecutionProvider,
  GraphSpec,
  RawOutput,
  SessionOptions,
} from "./backend.js";
export { BundleError } from "./errors.js";
export {
  checkServedDims,
  type Manifest,
  parseManifest,
  type ResolvedBundle,
  resolveBundle,
  spaceAt,
} from "./manifest.js";
export { describeBundle, EmbeddingModel, type LoadOptions, type ModelInfo } from "./model.js";
export { l2Normalize, type Pooling, truncateNormalize } from "./pool.js";
export type { TextKind, Tokenized } from "./tokenize.js";
