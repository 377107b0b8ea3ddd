export {
  Ann,
  type NewCollection,
  parsePayload,
  point,
  type ScalarValue,
  type SearchBy,
  type SearchHit,
  type SearchQuery,
  type SearchResult,
  type StoredPoint,
} from "./ann.js";
export { type Encoded, Encoder, type TextKindName } from "./encoder.js";
export { isRpcError, RpcError } from "./errors.js";
export { type FollowOptions, Indexer, isFinished, type SubmitDocument } from "./indexer.js";
export type { CallOptions, RetryOptions, ServiceOptions } from "./options.js";
export { DEFAULT_ADDRESSES, type ServiceName, TandemClient, type TandemOptions } from "./tandem.js";
export { UpsertStream } from "./upsert-stream.js";
