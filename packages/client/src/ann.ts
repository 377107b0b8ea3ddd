import { status } from "@grpc/grpc-js";
import {
  AnnClient,
  type CollectionInfo,
  type CollectionStats,
  encodeVector,
  type FieldMatch,
  type IndexParams,
  Metric,
  type Point,
  type RebuildIndexResponse,
  type Scalar,
} from "@tandem/proto";
import { isRpcError } from "./errors.js";
import type { CallOptions, ServiceOptions } from "./options.js";
import { ServiceClient } from "./service-client.js";
import { UpsertStream } from "./upsert-stream.js";
import { responseVector } from "./vectors.js";

export type ScalarValue = string | number | boolean;

export interface SearchQuery {
  /** A collection or an alias. */
  collection: string;
  k: number;
  /** Payload filter: every field must equal one of its values (AND across fields, OR within one). */
  filter?: Record<string, ScalarValue | readonly ScalarValue[]>;
  /** HNSW breadth; 0 or absent: the collection's ef_search. */
  ef?: number;
  /** Brute-force scan instead of HNSW: ground truth, slower. */
  exact?: boolean;
  /** Return the stored payloads (default true). */
  withPayload?: boolean;
  /** Project the payload to these keys (default: all). */
  payloadFields?: string[];
  withVectors?: boolean;
}

/** By text (the ANN service encodes it with its query encoder) or by a vector of the collection's space. */
export type SearchBy = { text: string; vector?: never } | { vector: Float32Array; text?: never };

export interface SearchHit {
  id: string;
  /** cosine / dot: higher is better; l2: squared distance, lower is better. */
  score: number;
  /** The stored JSON object ("" when not asked for); see parsePayload. */
  payloadJson: string;
  vector?: Float32Array;
}

export interface SearchResult {
  hits: SearchHit[];
  /** The collection that answered (an alias resolved). */
  collection: string;
  space: string;
  /** Searches by text: tokens of the query, and whether it was cut to the encoder's max tokens. */
  queryTokens: number;
  queryTruncated: boolean;
}

export interface StoredPoint {
  id: string;
  payloadJson: string;
  /** Only when asked for with `withVectors`. */
  vector?: Float32Array;
}

export interface NewCollection {
  name: string;
  /** The embedding space of the vectors it will hold, e.g. the indexer's teacher's. */
  space: string;
  dims: number;
  /** Default cosine. */
  metric?: Metric;
  index?: IndexParams;
}

/** A point to upsert, with its vector in the wire format. */
export function point(id: string, vector: Float32Array, payload: Record<string, unknown> = {}): Point {
  return { id, vector: encodeVector(vector), payloadJson: JSON.stringify(payload) };
}

/** A payload as an object ({} for ""). */
export function parsePayload(payloadJson: string): Record<string, unknown> {
  return payloadJson ? (JSON.parse(payloadJson) as Record<string, unknown>) : {};
}

const scalar = (v: ScalarValue): Scalar => ({
  kind:
    typeof v === "string"
      ? { $case: "stringValue", value: v }
      : typeof v === "number"
        ? { $case: "numberValue", value: v }
        : { $case: "boolValue", value: v },
});

function filterOf(filter: SearchQuery["filter"] = {}): FieldMatch[] {
  return Object.entries(filter).map(([field, v]) => ({
    field,
    anyOf: (Array.isArray(v) ? v : [v as ScalarValue]).map(scalar),
  }));
}

/**
 * The ANN service. Reads (search, get, info, lists) and alias moves are idempotent and retried on
 * UNAVAILABLE; creating, dropping, rebuilding and upserting are sent once.
 */
export class Ann extends ServiceClient<AnnClient> {
  constructor(options: ServiceOptions) {
    super(AnnClient, "Ann", options);
  }

  /** Idempotent. Refused with FAILED_PRECONDITION when the vector's (or the encoder's) space is not the collection's. */
  async search(query: SearchQuery & SearchBy, opts: CallOptions = {}): Promise<SearchResult> {
    const res = await this.call(
      "Search",
      this.client.search,
      {
        collection: query.collection,
        k: query.k,
        query:
          query.text !== undefined
            ? { $case: "text", value: query.text }
            : { $case: "vector", value: encodeVector(query.vector) },
        filter: filterOf(query.filter),
        ef: query.ef ?? 0,
        exact: query.exact ?? false,
        withPayload: query.withPayload ?? true,
        payloadFields: query.payloadFields ?? [],
        withVectors: query.withVectors ?? false,
      },
      opts,
      "idempotent",
    );
    return {
      hits: res.hits.map((h) => ({
        id: h.id,
        score: h.score,
        payloadJson: h.payloadJson,
        ...(query.withVectors ? { vector: this.vector(h.vector, "Ann.Search") } : {}),
      })),
      collection: res.collection,
      space: res.space,
      queryTokens: res.queryTokens,
      queryTruncated: res.queryTruncated,
    };
  }

  /** Idempotent. Points in the order asked, and the ids not stored. */
  async get(
    collection: string,
    ids: string[],
    opts: CallOptions & { withVectors?: boolean } = {},
  ): Promise<{ points: StoredPoint[]; missing: string[] }> {
    const res = await this.call(
      "Get",
      this.client.get,
      { collection, ids, withVectors: opts.withVectors ?? false },
      opts,
      "idempotent",
    );
    return {
      points: res.points.map((p) => ({
        id: p.id,
        payloadJson: p.payloadJson,
        ...(opts.withVectors ? { vector: this.vector(p.vector, "Ann.Get") } : {}),
      })),
      missing: res.missing,
    };
  }

  /** Sent once (a second try would answer ALREADY_EXISTS for the first one's success). */
  createCollection(c: NewCollection, opts: CallOptions = {}): Promise<CollectionInfo> {
    return this.call(
      "CreateCollection",
      this.client.createCollection,
      { name: c.name, space: c.space, dims: c.dims, metric: c.metric ?? Metric.METRIC_COSINE, index: c.index },
      opts,
      "once",
    );
  }

  /** Sent once. False when no such collection existed; refused when an alias points to it. */
  async dropCollection(name: string, opts: CallOptions = {}): Promise<boolean> {
    return (await this.call("DropCollection", this.client.dropCollection, { name }, opts, "once")).dropped;
  }

  /** Idempotent. */
  async listCollections(opts: CallOptions = {}): Promise<CollectionInfo[]> {
    return (await this.call("ListCollections", this.client.listCollections, {}, opts, "idempotent")).collections;
  }

  /** Idempotent. Sizes, WAL, churn and rebuild progress; NOT_FOUND (an RpcError) when neither collection nor alias. */
  stats(collection: string, opts: CallOptions = {}): Promise<CollectionStats> {
    return this.call("Stats", this.client.stats, { collection }, opts, "idempotent");
  }

  /** Idempotent. The collection (an alias resolved); NOT_FOUND (an RpcError) when neither exists. */
  async info(collection: string, opts: CallOptions = {}): Promise<CollectionInfo> {
    const { info } = await this.stats(collection, opts);
    if (!info) throw new Error(`${this.address} sent Stats of "${collection}" without its info`);
    return info;
  }

  /** Like info, but null when the collection or alias does not exist. */
  async find(collection: string, opts: CallOptions = {}): Promise<CollectionInfo | null> {
    try {
      return await this.info(collection, opts);
    } catch (err) {
      if (isRpcError(err, status.NOT_FOUND)) return null;
      throw err;
    }
  }

  /** Idempotent (the same alias set twice points at the same collection). Returns the collection it pointed at before, "" for a new alias. */
  async setAlias(alias: string, collection: string, opts: CallOptions = {}): Promise<string> {
    return (await this.call("SetAlias", this.client.setAlias, { alias, collection }, opts, "idempotent"))
      .previousCollection;
  }

  /** Idempotent in effect; false when there was no such alias (also on a retry after a lost answer). */
  async deleteAlias(alias: string, opts: CallOptions = {}): Promise<boolean> {
    return (await this.call("DeleteAlias", this.client.deleteAlias, { alias }, opts, "idempotent")).deleted;
  }

  /** Idempotent. */
  async listAliases(opts: CallOptions = {}): Promise<{ alias: string; collection: string }[]> {
    return (await this.call("ListAliases", this.client.listAliases, {}, opts, "idempotent")).aliases;
  }

  /**
   * Rebuilds a collection's HNSW graph. Sent once, and without a deadline unless one is given: a
   * large graph takes minutes to hours on CPU, and the answer comes when the new graph is in use.
   */
  rebuildIndex(collection: string, opts: CallOptions = {}): Promise<RebuildIndexResponse> {
    return this.call("RebuildIndex", this.client.rebuildIndex, { collection }, { deadlineMs: null, ...opts }, "once");
  }

  /** A streaming writer; see UpsertStream. Deadline: the service's streamDeadlineMs unless given. */
  openUpsert(collection: string, opts: CallOptions & { pointsPerMessage?: number } = {}): UpsertStream {
    return new UpsertStream(this.client, collection, {
      pointsPerMessage: opts.pointsPerMessage,
      deadlineMs: this.streamDeadline(opts),
      metadata: this.metadata(),
      fail: (err) => this.fail(err, "Upsert"),
    });
  }

  /** Upserts `points` (inserted, or replacing the points of the same ids) over one stream; resolves with the count once durable. Sent once. */
  async upsert(
    collection: string,
    points: Iterable<Point> | AsyncIterable<Point>,
    opts: CallOptions & { pointsPerMessage?: number } = {},
  ): Promise<number> {
    const stream = this.openUpsert(collection, opts);
    try {
      for await (const p of points) await stream.write([p]);
    } catch (err) {
      stream.cancel();
      throw err;
    }
    return stream.end();
  }

  private vector(bytes: Uint8Array, method: string): Float32Array {
    return responseVector(bytes, undefined, method, this.address);
  }
}
