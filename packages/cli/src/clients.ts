import { type ServiceError, status } from "@grpc/grpc-js";
import {
  AnnClient,
  type CollectionInfo,
  encodeVector,
  IndexerClient,
  Metric,
  type Point,
  QueryEncoderClient,
} from "@tandem/proto";
import { channelOptions, insecure, unary } from "@tandem/service-kit";

/** Large enough for a 1000-hit search with vectors or a batch of 768-d upserts. */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

export const annClient = (addr: string) => new AnnClient(addr, insecure(), channelOptions(MAX_MESSAGE_BYTES));
export const encoderClient = (addr: string) =>
  new QueryEncoderClient(addr, insecure(), channelOptions(MAX_MESSAGE_BYTES));
export const indexerClient = (addr: string) => new IndexerClient(addr, insecure(), channelOptions(MAX_MESSAGE_BYTES));

export function isGrpcError(err: unknown): err is ServiceError {
  return typeof err === "object" && err !== null && "code" in err && "details" in err;
}

/** One line for a failed call: the status name and the server's message, or a hint when nothing answered. */
export function describeError(err: unknown, addr?: string): string {
  if (isGrpcError(err)) {
    if (err.code === status.UNAVAILABLE && addr) {
      return `nothing answers at ${addr} (${err.details}). Is it running? Start everything with: pnpm tandem up`;
    }
    return `${status[err.code]}: ${err.details}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/** The collection's info, or null when it does not exist. */
export async function collectionInfo(ann: AnnClient, name: string): Promise<CollectionInfo | null> {
  try {
    const stats = await unary(ann.stats.bind(ann), { collection: name }, { timeoutMs: 10_000 });
    return stats.info ?? null;
  } catch (err) {
    if (isGrpcError(err) && err.code === status.NOT_FOUND) return null;
    throw err;
  }
}

/** Creates the collection when missing; refuses one that exists in another space. */
export async function ensureCollection(
  ann: AnnClient,
  name: string,
  space: string,
  dims: number,
): Promise<{ info: CollectionInfo; created: boolean }> {
  const existing = await collectionInfo(ann, name);
  if (existing) {
    if (existing.space !== space || existing.dims !== dims) {
      throw new Error(
        `collection ${name} holds space ${existing.space} (${existing.dims}-d), not ${space} (${dims}-d): drop it or choose another name`,
      );
    }
    return { info: existing, created: false };
  }
  const info = await unary(
    ann.createCollection.bind(ann),
    { name, space, dims, metric: Metric.METRIC_COSINE, index: undefined },
    { timeoutMs: 30_000 },
  );
  return { info, created: true };
}

/** One Upsert stream of `points`, in messages of `perMessage`; resolves once the ANN service has them durable. */
export function upsert(
  ann: AnnClient,
  collection: string,
  points: readonly Point[],
  perMessage = 256,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const call = ann.upsert({ deadline: Date.now() + 600_000 }, (err, res) =>
      err ? reject(err) : resolve(Number(res.upserted)),
    );
    (async () => {
      for (let i = 0; i < points.length; i += perMessage) {
        if (!call.write({ collection, points: points.slice(i, i + perMessage) })) {
          await new Promise((r) => call.once("drain", r));
        }
      }
      call.end();
    })().catch(reject);
  });
}

export function point(id: string, vector: Float32Array, payload: Record<string, unknown> = {}): Point {
  return { id, vector: encodeVector(vector), payloadJson: JSON.stringify(payload) };
}
