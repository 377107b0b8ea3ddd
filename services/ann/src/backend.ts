import type { CompiledClause } from "./filter.js";
import type { MetricName, Quantization } from "./hnsw.js";

/**
 * The seam between the API and the engine that holds a collection. The handlers and the
 * registry see only `CollectionBackend`, in the API's terms: string ids, scores as the API
 * defines them, payloads as JSON text. An engine's own identifiers (usearch's numeric keys)
 * and distances stay behind it. The embedded backend (embedded.ts) is `Collection`: usearch,
 * WAL, snapshots and LMDB in this process. What stays in Tandem for every backend: request
 * validation, the space check of `Search{text}`, aliases (registry.ts), payload projection.
 * test/conformance.ts is the behaviour every backend must show.
 */

export interface CollectionMeta {
  name: string;
  space: string;
  dims: number;
  metric: MetricName;
  m: number;
  efConstruction: number;
  efSearch: number;
  quantization: Quantization;
  /**
   * Rank the graph's k x oversampling nearest by their exact distance to the stored float32
   * originals (validate.ts, checkQuantization). Absent from collections created before it
   * existed, which read as no rescoring: they answer as they always did.
   */
  rescore: boolean;
  oversampling: number;
  createdAtMs: number;
}

export interface NewPoint {
  id: string;
  /** Packed float32 exactly as received (already checked against dims). */
  vector: Uint8Array;
  values: Float32Array;
  payload: string;
  payloadObject: Record<string, unknown>;
}

export interface StoredPoint {
  id: string;
  /** The payload JSON as it was written. */
  payload: string;
  /** The float32 original, when asked for. */
  vector: Float32Array | undefined;
}

export interface BackendSearch {
  k: number;
  ef: number;
  exact: boolean;
  filter: CompiledClause[] | null;
  withVectors: boolean;
}

/** Score as the API defines it: similarity for cosine and dot (higher is better), squared distance for l2. */
export type BackendHit = StoredPoint & { score: number };

/** The `Stats` response's figures beside the collection's info. */
export interface CollectionStats {
  memoryBytes: number;
  diskBytes: number;
  walBytes: number;
  walRecords: number;
  lastSnapshotMs: number;
  indexChurn: number;
  lastRebuildMs: number;
  rebuildInserted: number;
  rebuildTotal: number;
  lastSnapshotTookMs: number;
  lastSnapshotMaxStallMs: number;
}

export interface CollectionBackend {
  readonly meta: CollectionMeta;
  /** Points held; read on every ListCollections, so kept current rather than counted. */
  readonly count: number;
  /** Metrics gauges, read synchronously: WAL bytes since the last snapshot, and points replaced or deleted since the graph was built (0 where the engine has neither). */
  readonly walBytes: number;
  readonly indexChurn: number;

  /** Inserts or replaces (the last of an id within a batch wins); resolves once durable and visible, to the points written. */
  upsert(points: NewPoint[]): Promise<number>;
  /** Deletes the ids present; resolves once durable, to how many existed. */
  delete(ids: string[]): Promise<number>;
  /** Each id's point, in the order asked, undefined where there is none. */
  get(ids: string[], withVectors: boolean): Promise<Array<StoredPoint | undefined>>;
  /** The k nearest (fewer only when fewer match), best first. */
  search(query: Float32Array, o: BackendSearch): Promise<BackendHit[]>;
  stats(): Promise<CollectionStats>;
  /** Rebuilds the index from the stored points while serving; false when the collection closed first. */
  rebuild(): Promise<boolean>;
  /** Makes the next open fast (the engine's own checkpoint); durability does not depend on it. */
  snapshot(): Promise<void>;
  /** Stops serving; `snapshotFirst` at shutdown, not at a drop. */
  close(snapshotFirst: boolean): Promise<void>;
}

/** How the registry makes and opens a collection's backend; each collection has a directory of its own. */
export interface BackendFactory {
  /** Writes a new collection's definition into an empty directory (the registry renames it into place). */
  initialise(dir: string, meta: CollectionMeta): Promise<void>;
  open(dir: string): Promise<CollectionBackend>;
}
