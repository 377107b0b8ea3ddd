import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "@tandem/service-kit";
import type { CollectionMeta } from "./backend.js";
import type { CollectionOptions } from "./collection.js";
import { PayloadIndex } from "./filter.js";
import { HnswIndex, type HnswParams } from "./hnsw.js";
import { PayloadStore } from "./payloads.js";
import { GraphBuilder } from "./rebuild.js";
import { checkIndexFile, readManifest, type SnapshotManifest, sweep } from "./snapshot.js";
import { decodeRecord, RecordType, Wal, type WalPoint } from "./wal.js";

/**
 * A collection's restart path (the README's Durability, step 3): load the committed snapshot's
 * graph (checked first: usearch trusts what it loads), replay the WAL from its segment over
 * graph and store, rebuild the filter index from the store, and rebuild the graph from the
 * store when the snapshot was unreadable or disagrees with it. `Collection.open` serves what
 * this returns.
 */
export interface Recovered {
  meta: CollectionMeta;
  log: Logger;
  index: HnswIndex;
  store: PayloadStore;
  filters: PayloadIndex;
  /** Open on a fresh segment after the replayed ones. */
  wal: Wal;
  manifest: SnapshotManifest | null;
  count: number;
  nextKey: number;
  /** Keys written since the snapshot's WAL segment: what the next snapshot brings its base up to date with. */
  sinceSnapshot: Set<number>;
  /** A graph rebuilt from the store at start, written here: to be committed as the snapshot at the fresh segment. */
  built: string | null;
  walRecordsReplayed: number;
}

export function graphParams(meta: CollectionMeta): HnswParams {
  return {
    dims: meta.dims,
    metric: meta.metric,
    m: meta.m,
    efConstruction: meta.efConstruction,
    quantization: meta.quantization,
  };
}

export function readMeta(dir: string): CollectionMeta {
  const stored = JSON.parse(readFileSync(join(dir, "collection.json"), "utf8")) as Partial<CollectionMeta> &
    Omit<CollectionMeta, "rescore" | "oversampling">;
  return { ...stored, rescore: stored.rescore ?? false, oversampling: stored.oversampling ?? 1 };
}

/** The rebuild thread's output file: a `.tmp`, so a crash leaves nothing `sweep` keeps. */
export function rebuildPath(dir: string): string {
  return join(dir, `rebuild-${Date.now()}.usearch.tmp`);
}

export async function recover(dir: string, opts: CollectionOptions): Promise<Recovered> {
  const meta = readMeta(dir);
  const log = opts.log.child({ collection: meta.name });
  const params = graphParams(meta);
  const manifest = readManifest(dir);
  sweep(dir, manifest, true);

  let index: HnswIndex | null = null;
  if (manifest) {
    try {
      await checkIndexFile(dir, manifest);
      index = HnswIndex.load(params, join(dir, manifest.indexFile), opts.threads);
    } catch (err) {
      // The store holds every vector: an unreadable index costs a rebuild, not data.
      log.error({ err, file: manifest.indexFile }, "snapshot index unreadable: rebuilding from the payload store");
    }
  }
  const rebuildIndex = index === null && manifest !== null;
  index ??= new HnswIndex(params, opts.threads);

  const store = PayloadStore.open(join(dir, "store"), meta.dims);
  const walDir = join(dir, "wal");
  const walFrom = manifest?.walFrom ?? 1;
  let maxKey = -1;
  /** Keys the replayed WAL wrote: what the next snapshot brings its base up to date with. */
  const replayed = new Set<number>();
  let walBytes = 0;
  for (const seg of Wal.segments(walDir)) if (seg >= walFrom) walBytes += statSync(Wal.path(walDir, seg)).size;
  const pending: Array<{ upserts: WalPoint[]; deletes: Array<{ key: number; id: string }> }> = [];
  const flush = () => {
    if (pending.length > 0) store.writeManySync(pending.splice(0));
  };
  const replayIndex: HnswIndex = index;
  const replay = Wal.replay(walDir, walFrom, (body) => {
    const rec = decodeRecord(body, meta.dims);
    for (const p of rec.points) {
      maxKey = Math.max(maxKey, p.key);
      replayed.add(p.key);
    }
    if (rec.type === RecordType.Upsert) {
      pending.push({ upserts: rec.points, deletes: [] });
      if (!rebuildIndex)
        replayIndex.upsert(
          rec.points.map((p) => p.key),
          matrixOf(rec.points, meta.dims),
        );
    } else {
      pending.push({ upserts: [], deletes: rec.points });
      if (!rebuildIndex) replayIndex.remove(rec.points.map((p) => p.key));
    }
    if (pending.length >= 256) flush();
  });
  flush();
  if (replay.droppedBytes > 0) log.warn({ droppedBytes: replay.droppedBytes }, "WAL: dropped a torn or corrupt tail");

  const nextKey = Math.max(store.nextKey, maxKey + 1);
  const filters = new PayloadIndex(opts.filterMaxStringBytes);
  let count = 0;
  for (const p of store.scan()) {
    count++;
    filters.add(p.key, JSON.parse(p.payload) as Record<string, unknown>);
  }
  const wal = await Wal.create(walDir, Math.max(replay.lastSegment, walFrom - 1));
  let built: string | null = null;
  if (rebuildIndex || index.size !== count) {
    if (!rebuildIndex) log.warn({ index: index.size, store: count }, "index and store disagree: rebuilding the index");
    // On a graph thread too: the event loop stays free to answer health checks (NOT_SERVING).
    const builder = new GraphBuilder(params, opts.threads, rebuildPath(dir));
    const graph = await builder.build(store, () => false);
    if (!graph) throw new Error("index rebuild at start stopped");
    index = graph;
    built = builder.path;
  } else wal.addReplayed(walBytes, replay.records);
  return {
    meta,
    log,
    index,
    store,
    filters,
    wal,
    manifest,
    count,
    nextKey,
    sinceSnapshot: built ? new Set() : replayed,
    built,
    walRecordsReplayed: replay.records,
  };
}

function matrixOf(points: WalPoint[], dims: number): Float32Array {
  const m = new Float32Array(points.length * dims);
  const bytes = new Uint8Array(m.buffer);
  points.forEach((p, i) => {
    bytes.set(p.vector.subarray(0, dims * 4), i * dims * 4);
  });
  return m;
}
