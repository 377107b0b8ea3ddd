// What the ANN benchmarks do to the service over gRPC: ingest, search load, the process's memory.
import { readFileSync } from "node:fs";
import { Metadata } from "@grpc/grpc-js";
import { type AnnClient, encodeVector, SearchRequest, type UpsertRequest } from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import { row } from "./data.js";

export interface Measure {
  qps: number;
  p50: number;
  p99: number;
  recall: number;
}

export const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};

function upsertStream(c: AnnClient, messages: UpsertRequest[]): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const s = c.upsert(new Metadata(), {}, (err, res) => (err ? reject(err) : resolve(res)));
    for (const m of messages) s.write(m);
    s.end();
  });
}

/**
 * Upserts rows `from`..`to` of `base` as points with ids "<row>" (batches of 500, ten to a
 * stream, one WAL fsync per batch); returns the seconds it took.
 */
export async function ingest(
  client: AnnClient,
  collection: string,
  base: Float32Array,
  dims: number,
  from: number,
  to: number,
  id: (row: number) => number = (r) => r,
): Promise<number> {
  const t0 = performance.now();
  const BATCH = 500;
  for (let i = from; i < to; i += BATCH * 10) {
    const msgs: UpsertRequest[] = [];
    for (let b = i; b < Math.min(to, i + BATCH * 10); b += BATCH) {
      const points = [];
      for (let j = b; j < Math.min(to, b + BATCH); j++) {
        points.push({ id: String(id(j)), vector: encodeVector(row(base, j, dims)), payloadJson: `{"i":${j}}` });
      }
      msgs.push({ collection, points });
    }
    await upsertStream(client, msgs);
  }
  return (performance.now() - t0) / 1000;
}

export function searchReq(collection: string, query: Float32Array, k: number, ef: number): SearchRequest {
  return SearchRequest.fromPartial({ collection, k, ef, query: { $case: "vector", value: encodeVector(query) } });
}

/**
 * `total` searches from `clients` concurrent loops on one channel, query i % nq each; recall@k
 * over the first nq (ids are data rows), QPS and latency percentiles over all.
 */
export async function searchLoad(
  client: AnnClient,
  o: {
    collection: string;
    ef: number;
    k: number;
    clients: number;
    total: number;
    nq: number;
    query: (q: number) => Float32Array;
    recallOf: (q: number, rows: number[]) => number;
  },
): Promise<Measure> {
  const lat: number[] = [];
  let next = 0;
  let recall = 0;
  let recalled = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: o.clients }, async () => {
      while (next < o.total) {
        const i = next++;
        const q = i % o.nq;
        const t = performance.now();
        const res = await unary(client.search.bind(client), searchReq(o.collection, o.query(q), o.k, o.ef), {
          timeoutMs: 30_000,
        });
        lat.push(performance.now() - t);
        if (i < o.nq) {
          recall += o.recallOf(
            q,
            res.hits.map((h) => Number(h.id)),
          );
          recalled++;
        }
      }
    }),
  );
  return {
    qps: o.total / ((performance.now() - start) / 1000),
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    recall: recall / recalled,
  };
}

/**
 * A process's resident memory in MiB (Linux): all of it, the anonymous part (heap and native
 * allocations: the graph) and the file-backed part (mapped files: LMDB's originals, once read).
 */
export function residentMb(pid: number): { rss: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024;
  return { rss: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile") };
}

/** How long a shutdown (its final snapshot) or a restart (loading it) may take: minutes at 1M points. */
export const RESTART_MS = 1_800_000;

/** The ANN service's settings for a bench run: loopback, big messages and batches, no timed snapshots. */
export const benchServiceEnv = (dataDir: string, extra: Record<string, string> = {}): Record<string, string> => ({
  DATA_DIR: dataDir,
  HOST: "127.0.0.1",
  MAX_MESSAGE_BYTES: String(64 * 2 ** 20),
  MAX_POINTS_PER_REQUEST: "1000",
  SNAPSHOT_INTERVAL_MS: "0",
  ...extra,
});
