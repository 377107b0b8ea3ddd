export { BundleError } from "./errors.js";
export type { ExecutionProvider, SessionOptions } from "./infer.js";
export { type Manifest, parseManifest, type ResolvedBundle, resolveBundle } from "./manifest.js";
export { EmbeddingModel, type LoadOptions, type ModelInfo } from "./model.js";
export { l2Normalize } from "./pool.js";
export type { TextKind, Tokenized } from "./tokenize.js";
