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
import { clientTransport, isSecurityVariable, unary, upstreamSecurityFromEnv } from "@tandem/service-kit";
import type { ServiceName } from "./addresses.js";
import type { TargetSpace } from "./collection-space.js";

/** Large enough for a 1000-hit search with vectors or a batch of 768-d upserts. */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** The prefix of each service's TLS variables: the names the services use for each other. */
const SECURITY_PREFIX = { encoder: "ENCODER", ann: "ANN", indexer: "INDEXER" } as const satisfies Record<
  ServiceName,
  string
>;

/**
 * TLS when <PREFIX>_TLS_CA_FILE is set, mTLS with TLS_CERT_FILE/TLS_KEY_FILE, a bearer token with
 * AUTH_TOKEN_FILE, read from `vars` (the shell's environment unless a command says otherwise).
 */
const transport = (service: ServiceName, vars: NodeJS.ProcessEnv) =>
  clientTransport(MAX_MESSAGE_BYTES, upstreamSecurityFromEnv(SECURITY_PREFIX[service], vars));

export function annClient(addr: string, vars: NodeJS.ProcessEnv = process.env): AnnClient {
  const t = transport("ann", vars);
  return new AnnClient(addr, t.credentials, t.options);
}
export function encoderClient(addr: string, vars: NodeJS.ProcessEnv = process.env): QueryEncoderClient {
  const t = transport("encoder", vars);
  return new QueryEncoderClient(addr, t.credentials, t.options);
}
export function indexerClient(addr: string, vars: NodeJS.ProcessEnv = process.env): IndexerClient {
  const t = transport("indexer", vars);
  return new IndexerClient(addr, t.credentials, t.options);
}

/**
 * The environment of a stack the CLI starts itself on 127.0.0.1 (`tandem up`, the eval's in-process ANN
 * service): plaintext and tokenless, whatever the shell holds for a deployment. Passed on, the servers'
 * TLS/token variables would secure some of those services but not the CLI's view of them, and one
 * HEALTH_PORT would be bound three times. `dropped` names what was left out, so the CLI can say so.
 */
export function loopbackEnv(vars: NodeJS.ProcessEnv): { vars: NodeJS.ProcessEnv; dropped: string[] } {
  const keep: NodeJS.ProcessEnv = {};
  const dropped: string[] = [];
  for (const [name, value] of Object.entries(vars)) {
    if (isSecurityVariable(name)) {
      if (value) dropped.push(name);
    } else keep[name] = value;
  }
  return { vars: keep, dropped: dropped.sort() };
}

export function isGrpcError(err: unknown): err is ServiceError {
  return typeof err === "object" && err !== null && "code" in err && "details" in err;
}

/** An UNAVAILABLE the indexer sent itself because its Redis is away: its message names the store. */
export function redisAway(err: ServiceError): boolean {
  return err.code === status.UNAVAILABLE && /\bRedis\b/.test(err.details);
}

/** One line for a failed call: the status name and the server's message, or a hint when nothing answered. */
export function describeError(err: unknown, addr?: string): string {
  if (isGrpcError(err)) {
    if (err.code === status.UNAVAILABLE && addr && !redisAway(err)) {
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

/** "collection x", or "alias x (of collection y)" when `name` resolved through an alias. */
export function collectionLabel(name: string, info: CollectionInfo): string {
  return info.name === name ? `collection ${name}` : `alias ${name} (of collection ${info.name})`;
}

/**
 * Creates the collection when missing (an alias resolves to its collection); refuses one that exists
 * in another space, naming both spaces and the way out.
 */
export async function ensureCollection(
  ann: AnnClient,
  name: string,
  target: TargetSpace,
): Promise<{ info: CollectionInfo; created: boolean }> {
  const existing = await collectionInfo(ann, name);
  if (existing) {
    if (existing.space !== target.space || existing.dims !== target.dims) {
      throw new Error(
        `${collectionLabel(name, existing)} exists in space ${existing.space} (${existing.dims}-d), but the space ` +
          `wanted is ${target.space} (${target.dims}-d), from ${target.from}: vectors of two spaces are never ` +
          `searched together. Choose another name, or drop ${existing.name} first (tandem collections drop ${existing.name} --yes)`,
      );
    }
    return { info: existing, created: false };
  }
  const info = await unary(
    ann.createCollection.bind(ann),
    { name, space: target.space, dims: target.dims, metric: Metric.METRIC_COSINE, index: undefined },
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
