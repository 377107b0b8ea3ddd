import { Ann, type SearchResult, type StoredPoint, type UpsertStream } from "@tandem/client";
import type { CollectionInfo } from "@tandem/proto";
import { type ClientSecurity, upstreamSecurity } from "@tandem/service-kit";
import type { IndexerConfig } from "./config.js";

/** A collection as the indexer needs it: concrete name (an alias resolved), space, and generation stamp. */
export interface Target {
  name: string;
  space: string;
  dims: number;
  createdAtMs: number;
}

/**
 * The ANN service as the indexer uses it: every call, streams included, under one deadline
 * (ANN_TIMEOUT_MS), and nothing retried here: a failed write fails the chunk, and BullMQ's
 * attempts and backoff decide what happens to the job.
 */
export class AnnGateway {
  private readonly ann: Ann;

  constructor(addr: string, timeoutMs: number, maxMessageBytes: number, sec: ClientSecurity = {}) {
    this.ann = new Ann({
      address: addr,
      deadlineMs: timeoutMs,
      streamDeadlineMs: timeoutMs,
      maxMessageBytes,
      security: sec,
      retry: false,
    });
  }

  /** The ANN service the indexer's configuration names (ANN_ADDR, ANN_TIMEOUT_MS, the ANN_TLS_* variables, AUTH_TOKEN_FILE). */
  static fromConfig(config: IndexerConfig): AnnGateway {
    return new AnnGateway(
      config.ANN_ADDR,
      config.ANN_TIMEOUT_MS,
      config.MAX_MESSAGE_BYTES,
      upstreamSecurity(config, "ANN"),
    );
  }

  /** Resolves a collection or alias; undefined when neither exists. */
  async resolve(collection: string): Promise<Target | undefined> {
    const info = await this.ann.find(collection);
    return info ? { name: info.name, space: info.space, dims: info.dims, createdAtMs: info.createdAtMs } : undefined;
  }

  async count(collection: string): Promise<number> {
    return (await this.ann.info(collection)).count;
  }

  createCollection(name: string, space: string, dims: number): Promise<CollectionInfo> {
    return this.ann.createCollection({ name, space, dims });
  }

  async aliasTarget(alias: string): Promise<string | undefined> {
    return (await this.ann.listAliases()).find((a) => a.alias === alias)?.collection;
  }

  setAlias(alias: string, collection: string): Promise<string> {
    return this.ann.setAlias(alias, collection);
  }

  get(collection: string, ids: string[], withVectors: boolean): Promise<{ points: StoredPoint[]; missing: string[] }> {
    return this.ann.get(collection, ids, { withVectors });
  }

  /** Exact (brute-force) top-k ids: parity checks compare models, not HNSW approximations. */
  exactTopK(collection: string, vector: Float32Array, k: number): Promise<SearchResult> {
    return this.ann.search({ collection, vector, k, exact: true, withPayload: false });
  }

  open(collection: string, pointsPerMessage: number): UpsertStream {
    return this.ann.openUpsert(collection, { pointsPerMessage });
  }

  close(): void {
    this.ann.close();
  }
}
