import { type ClientWritableStream, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import {
  AnnClient,
  type CollectionInfo,
  encodeVector,
  type GetResponse,
  Metric,
  type Point,
  type SearchResponse,
  type UpsertRequest,
  type UpsertResponse,
} from "@tandem/proto";
import { type ClientSecurity, clientTransport, unary } from "@tandem/service-kit";

/** A collection as the indexer needs it: concrete name (an alias resolved), space, and generation stamp. */
export interface Target {
  name: string;
  space: string;
  dims: number;
  createdAtMs: number;
}

export function isGrpcError(err: unknown, code: status): boolean {
  return typeof err === "object" && err !== null && (err as ServiceError).code === code;
}

/** The ANN service as the indexer uses it: unary calls with a deadline, and streaming writers. */
export class AnnGateway {
  readonly client: AnnClient;

  constructor(
    addr: string,
    private readonly timeoutMs: number,
    maxMessageBytes: number,
    sec: ClientSecurity = {},
  ) {
    const t = clientTransport(maxMessageBytes, sec);
    this.client = new AnnClient(addr, t.credentials, t.options);
  }

  /** Resolves a collection or alias; undefined when neither exists. */
  async resolve(collection: string): Promise<Target | undefined> {
    try {
      const stats = await unary(this.client.stats.bind(this.client), { collection }, { timeoutMs: this.timeoutMs });
      const info = stats.info as CollectionInfo;
      return { name: info.name, space: info.space, dims: info.dims, createdAtMs: info.createdAtMs };
    } catch (err) {
      if (isGrpcError(err, status.NOT_FOUND)) return undefined;
      throw err;
    }
  }

  async count(collection: string): Promise<number> {
    const stats = await unary(this.client.stats.bind(this.client), { collection }, { timeoutMs: this.timeoutMs });
    return stats.info?.count ?? 0;
  }

  async createCollection(name: string, space: string, dims: number): Promise<CollectionInfo> {
    return unary(
      this.client.createCollection.bind(this.client),
      { name, space, dims, metric: Metric.METRIC_COSINE, index: undefined },
      { timeoutMs: this.timeoutMs },
    );
  }

  async aliasTarget(alias: string): Promise<string | undefined> {
    const res = await unary(this.client.listAliases.bind(this.client), {}, { timeoutMs: this.timeoutMs });
    return res.aliases.find((a) => a.alias === alias)?.collection;
  }

  async setAlias(alias: string, collection: string): Promise<string> {
    const res = await unary(
      this.client.setAlias.bind(this.client),
      { alias, collection },
      { timeoutMs: this.timeoutMs },
    );
    return res.previousCollection;
  }

  async get(collection: string, ids: string[], withVectors: boolean): Promise<GetResponse> {
    return unary(this.client.get.bind(this.client), { collection, ids, withVectors }, { timeoutMs: this.timeoutMs });
  }

  /** Exact (brute-force) top-k ids: parity checks compare models, not HNSW approximations. */
  async exactTopK(collection: string, vector: Float32Array, k: number): Promise<SearchResponse> {
    return unary(
      this.client.search.bind(this.client),
      {
        collection,
        k,
        query: { $case: "vector", value: encodeVector(vector) },
        filter: [],
        ef: 0,
        exact: true,
        withPayload: false,
        payloadFields: [],
        withVectors: false,
      },
      { timeoutMs: this.timeoutMs },
    );
  }

  open(collection: string, pointsPerMessage: number): UpsertStream {
    return new UpsertStream(this.client, collection, pointsPerMessage, this.timeoutMs);
  }

  close(): void {
    this.client.close();
  }
}

/**
 * One Upsert client stream. Points are written as they are embedded (the ANN
 * service indexes them while the teacher works on the next batch); `end()`
 * resolves only when the service acknowledged every point as durable.
 */
export class UpsertStream {
  private readonly call: ClientWritableStream<UpsertRequest>;
  private readonly done: Promise<UpsertResponse>;
  private pending: Point[] = [];
  private sent = 0;
  private failure: Error | null = null;

  constructor(
    client: AnnClient,
    private readonly collection: string,
    private readonly pointsPerMessage: number,
    timeoutMs: number,
  ) {
    let resolve!: (r: UpsertResponse) => void;
    let reject!: (e: Error) => void;
    this.done = new Promise<UpsertResponse>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Marked handled: a failure surfaces through write()/end(), not as an unhandled rejection.
    this.done.catch(() => {});
    this.call = client.upsert(new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      if (err) {
        this.failure = err;
        reject(err);
      } else resolve(res);
    });
  }

  /** Queues points; resolves when the transport can take more (back-pressure from the ANN service). */
  async write(points: Point[]): Promise<void> {
    if (this.failure) throw this.failure;
    this.pending.push(...points);
    while (this.pending.length >= this.pointsPerMessage) {
      await this.send(this.pending.splice(0, this.pointsPerMessage));
    }
  }

  private async send(points: Point[]): Promise<void> {
    this.sent += points.length;
    const more = this.call.write({ collection: this.collection, points });
    if (!more) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = () => {
          this.call.off("error", onError);
          resolve();
        };
        const onError = (e: Error) => {
          this.call.off("drain", onDrain);
          reject(e);
        };
        this.call.once("drain", onDrain);
        this.call.once("error", onError);
      });
    }
  }

  /** Flushes, half-closes, and waits for the acknowledgement; checks the count the service reports. */
  async end(): Promise<number> {
    if (this.pending.length > 0) await this.send(this.pending.splice(0));
    this.call.end();
    const res = await this.done;
    if (res.upserted !== this.sent) {
      throw new Error(`ANN acknowledged ${res.upserted} of ${this.sent} points written to "${this.collection}"`);
    }
    return res.upserted;
  }

  cancel(): void {
    this.call.cancel();
  }
}
