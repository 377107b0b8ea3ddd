import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import {
  AnnClient,
  type CreateCollectionRequest,
  encodeVector,
  Metric,
  type SearchRequest,
  type UpsertRequest,
  type UpsertResponse,
} from "@tandem/proto";
import { createLogger, globalMeter, unary } from "@tandem/service-kit";
import { annConfig, type RunningAnn, startAnn } from "../src/service.js";

export { unary };

export function tempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), `ann-${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface TestAnn {
  ann: RunningAnn;
  client: AnnClient;
  port: number;
  stop(): Promise<void>;
}

/** The real service in-process on a free loopback port, over a real data directory; `vars` add to its config. */
export async function startTestAnn(dataDir: string, vars: Record<string, string> = {}): Promise<TestAnn> {
  const config = annConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    DATA_DIR: dataDir,
    LOG_LEVEL: "warn",
    SNAPSHOT_INTERVAL_MS: "0",
    ...vars,
  });
  // With METRICS_PORT the service makes its own meter and serves /metrics, as deployed.
  const ann = await startAnn(config, {
    log: createLogger("ann-test", config.LOG_LEVEL),
    meter: vars.METRICS_PORT ? undefined : globalMeter("ann-test"),
  });
  const client = new AnnClient(`127.0.0.1:${ann.port}`, credentials.createInsecure());
  return {
    ann,
    client,
    port: ann.port,
    async stop() {
      client.close();
      await ann.stop();
    },
  };
}

export function createReq(
  name: string,
  dims: number,
  extra: Partial<CreateCollectionRequest> = {},
): CreateCollectionRequest {
  return { name, space: "test-space/8", dims, metric: Metric.METRIC_COSINE, index: undefined, ...extra };
}

export function searchReq(collection: string, vector: Float32Array, extra: Partial<SearchRequest> = {}): SearchRequest {
  return {
    collection,
    k: 10,
    query: { $case: "vector", value: encodeVector(vector) },
    filter: [],
    ef: 0,
    exact: false,
    withPayload: false,
    payloadFields: [],
    withVectors: false,
    ...extra,
  };
}

/** One client-streaming Upsert call with the given messages. */
export function upsert(client: AnnClient, messages: UpsertRequest[], timeoutMs = 60_000): Promise<UpsertResponse> {
  return new Promise((resolve, reject) => {
    const call = client.upsert(new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
    for (const m of messages) call.write(m);
    call.end();
  });
}

export function point(id: string, vector: Float32Array, payload: unknown = {}) {
  return { id, vector: encodeVector(vector), payloadJson: JSON.stringify(payload) };
}

/** Deterministic PRNG (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussian(rand: () => number): number {
  const u = Math.max(rand(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

/** `n` unit vectors around `clusters` random centres (a retrieval-like distribution). */
export function clustered(n: number, dims: number, clusters: number, seed: number, spread = 0.35): Float32Array[] {
  const rand = rng(seed);
  const centres = Array.from({ length: clusters }, () =>
    normalize(Float32Array.from({ length: dims }, () => gaussian(rand))),
  );
  return Array.from({ length: n }, () => {
    const c = centres[Math.floor(rand() * clusters)]!;
    return normalize(Float32Array.from(c, (x) => x + ((spread * gaussian(rand)) / Math.sqrt(dims)) * 4));
  });
}

export function normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s) || 1;
  return v.map((x) => x / n);
}

export function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** Plain-JS cosine top-k: ground truth independent of the service and of usearch. */
export function bruteForce(
  points: Array<{ id: string; vector: Float32Array }>,
  q: Float32Array,
  k: number,
): Array<{ id: string; score: number }> {
  const qn = Math.sqrt(dot(q, q));
  return points
    .map((p) => ({ id: p.id, score: dot(p.vector, q) / (Math.sqrt(dot(p.vector, p.vector)) * qn) }))
    .sort((a, b) => b.score - a.score)
    .slice(0, k);
}

/** The error of a call expected to fail. */
export async function failure(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error("expected the call to fail, it succeeded");
}
