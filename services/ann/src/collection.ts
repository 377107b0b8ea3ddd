import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { rename } from "node:fs/promises";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { FailedPreconditionError, type Logger, ResourceExhaustedError, UnavailableError } from "@tandem/service-kit";
import type { CollectionMeta, CollectionStats, NewPoint } from "./backend.js";
import { SearchBatcher } from "./batcher.js";
import { exactTopK } from "./exact.js";
import { type CompiledClause, FilterPlan, PayloadIndex } from "./filter.js";
import { GraphThread } from "./graph-thread.js";
import { HnswIndex, type HnswParams, type Neighbours } from "./hnsw.js";
import { PayloadStore } from "./payloads.js";
import { GraphBuilder } from "./rebuild.js";
import {
  checkIndexFile,
  commitManifest,
  readManifest,
  type SnapshotManifest,
  sweep,
  writeFileAtomic,
  writeIndexFile,
} from "./snapshot.js";
import { decodeRecord, encodeDelete, encodeUpsert, RecordType, Wal, type WalPoint } from "./wal.js";

export type { CollectionMeta, NewPoint };

/**
 * One collection: its directory holds
 *
 *   collection.json   what it is (space, dims, metric, index params), written once
 *   snapshot.json     + index-<n>.usearch   the last snapshot (snapshot.ts)
 *   wal/              segments since that snapshot (wal.ts)
 *   store/            LMDB: ids, payloads, original vectors (payloads.ts)
 *
 * Writes are serialised per collection: WAL append + fdatasync, then the
 * payload store, then the HNSW index and the filter index; the caller is
 * answered after all of it. Reads never wait for the lock.
 *
 * It speaks in the store's internal numeric keys and usearch's distances; EmbeddedBackend
 * (embedded.ts) puts it behind the API's seam (backend.ts).
 */

export interface CollectionOptions {
  log: Logger;
  maxPoints: number;
  filterMaxStringBytes: number;
  filterExactMax: number;
  filterMaxOverfetch: number;
  threads: number;
  snapshotWalBytes: number;
  faultSnapshotStallMs: number;
  /** Rebuild the graph once points replaced or deleted since it was built reach this share of the points; 0: never. */
  rebuildChurn: number;
  /** Collections smaller than this are never rebuilt automatically. */
  rebuildMinPoints: number;
  /** Most concurrent plain searches answered by one batched native call. */
  searchBatchMax: number;
}

export interface SearchOptions {
  k: number;
  ef: number;
  exact: boolean;
  filter: CompiledClause[] | null;
}

/** Serialises async critical sections (a promise chain). */
class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

const EXACT_CHUNK_ROWS = 8192;
/** After a failed rebuild, churn triggers none for this long (a failing build would otherwise start again at every write). */
const REBUILD_RETRY_MS = 10 * 60_000;

export class Collection {
  private readonly lock = new Mutex();
  private closed = false;
  /** Set when a write became durable in the WAL but could not be applied in memory. */
  private broken: Error | null = null;
  /** Set by `close`: no new snapshot or rebuild starts, and running ones stop at their next step. */
  private stopping = false;
  private snapshotting: Promise<void> | null = null;
  /** The graph thread of the snapshot in progress (a drop stops it). */
  private snapshotThread: GraphThread | null = null;
  /** The last snapshot committed since start: how long it took, and the event loop's longest stall meanwhile. */
  private lastSnapshot = { tookMs: 0, maxStallMs: 0 };
  /** Serialises snapshot commits (a snapshot's, a rebuild's), which must only move forward. */
  private readonly commitLock = new Mutex();
  /** Points replaced or deleted since the graph in use was built. */
  private churn = 0;
  private rebuilding: Promise<boolean> | null = null;
  /** While a rebuild runs: its builder, and the keys written since it started (applied to the new graph at the swap). */
  private builder: GraphBuilder | null = null;
  private touched: Set<number> | null = null;
  private lastRebuildMs = 0;
  private rebuildFailedAtMs = 0;
  /** Plain HNSW searches go through it; it reads `this.index` when it runs, so a swap is seen. */
  private readonly batcher: SearchBatcher;

  private constructor(
    readonly dir: string,
    readonly meta: CollectionMeta,
    private readonly opts: CollectionOptions,
    private index: HnswIndex,
    private readonly store: PayloadStore,
    private readonly filters: PayloadIndex,
    private readonly wal: Wal,
    private manifest: SnapshotManifest | null,
    private _count: number,
    private nextKey: number,
    /** Keys written since the committed snapshot's WAL segment: its base plus these is the graph now. */
    private sinceSnapshot: Set<number>,
  ) {
    this.batcher = new SearchBatcher(
      (queries, beam) => this.index.searchBatch(queries, beam, beam),
      opts.searchBatchMax,
    );
  }

  static params(meta: CollectionMeta): HnswParams {
    return {
      dims: meta.dims,
      metric: meta.metric,
      m: meta.m,
      efConstruction: meta.efConstruction,
      quantization: meta.quantization,
    };
  }

  /** Writes collection.json into an empty directory (the registry renames it into place). */
  static async initialise(dir: string, meta: CollectionMeta): Promise<void> {
    mkdirSync(dir, { recursive: true });
    await writeFileAtomic(join(dir, "collection.json"), JSON.stringify(meta));
  }

  static readMeta(dir: string): CollectionMeta {
    const stored = JSON.parse(readFileSync(join(dir, "collection.json"), "utf8")) as Partial<CollectionMeta> &
      Omit<CollectionMeta, "rescore" | "oversampling">;
    return { ...stored, rescore: stored.rescore ?? false, oversampling: stored.oversampling ?? 1 };
  }

  /** Restart path: load the snapshot, replay the WAL over index and store, rebuild the filter index. */
  static async open(dir: string, opts: CollectionOptions): Promise<Collection> {
    const meta = Collection.readMeta(dir);
    const log = opts.log.child({ collection: meta.name });
    const params = Collection.params(meta);
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
      if (!rebuildIndex)
        log.warn({ index: index.size, store: count }, "index and store disagree: rebuilding the index");
      // On a graph thread too: the event loop stays free to answer health checks (NOT_SERVING).
      const builder = new GraphBuilder(params, opts.threads, rebuildPath(dir));
      const graph = await builder.build(store, () => false);
      if (!graph) throw new Error("index rebuild at start stopped");
      index = graph;
      built = builder.path;
    } else wal.addReplayed(walBytes, replay.records);
    const c = new Collection(
      dir,
      meta,
      { ...opts, log },
      index,
      store,
      filters,
      wal,
      manifest,
      count,
      nextKey,
      built ? new Set() : replayed,
    );
    // The new graph holds the whole store, which holds the whole WAL: a snapshot at the fresh
    // segment, so the next start loads it instead of building it again.
    if (built) await c.commitGraphFile(built, wal.currentSegment);
    log.info(
      { points: count, snapshot: c.manifest?.indexFile ?? null, walRecordsReplayed: replay.records },
      "collection loaded",
    );
    return c;
  }

  get count(): number {
    return this._count;
  }

  /** WAL bytes since the last snapshot (cheap, unlike `stats()`, which walks the directory). */
  get walBytes(): number {
    return this.wal.bytes;
  }

  /** Points replaced or deleted since the graph in use was built. */
  get indexChurn(): number {
    return this.churn;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  // ---- writes -------------------------------------------------------------

  /** Inserts or replaces; resolves once the batch is durable and visible. Returns the points written. */
  upsert(points: NewPoint[]): Promise<number> {
    // Within one batch the last occurrence of an id wins, as if sent one by one.
    const byId = new Map<string, NewPoint>();
    for (const p of points) {
      byId.delete(p.id);
      byId.set(p.id, p);
    }
    const unique = [...byId.values()];
    return this.lock.run(async () => {
      this.checkWritable();
      if (unique.length === 0) return 0;
      let next = this.nextKey;
      const previous: Array<{ key: number; payload: string }> = [];
      const records: WalPoint[] = unique.map((p) => {
        let key = this.store.keyOf(p.id);
        if (key === undefined) key = next++;
        else {
          const old = this.store.entry(key);
          if (old) previous.push({ key, payload: old.payload });
        }
        return { key, id: p.id, payload: p.payload, vector: p.vector };
      });
      const added = next - this.nextKey;
      if (this._count + added > this.opts.maxPoints) {
        throw new ResourceExhaustedError(
          `collection ${this.meta.name} holds ${this._count} points; ${added} more would pass MAX_POINTS_PER_COLLECTION=${this.opts.maxPoints}`,
        );
      }
      await this.wal.append(encodeUpsert(records));
      // Durable from here on: a failure below is repaired by replay at the next start.
      try {
        await this.store.write(records, [], next);
        this.index.upsert(
          records.map((r) => r.key),
          matrixOfValues(unique, this.meta.dims),
        );
        for (const old of previous) this.filters.remove(old.key, JSON.parse(old.payload) as Record<string, unknown>);
        records.forEach((r, i) => {
          this.filters.add(r.key, unique[i]!.payloadObject);
        });
      } catch (err) {
        this.markBroken(err);
        throw err;
      }
      this.nextKey = next;
      this._count += added;
      this.churn += previous.length;
      for (const r of records) this.touched?.add(r.key);
      for (const r of records) this.sinceSnapshot.add(r.key);
      this.maybeSnapshot();
      this.maybeRebuild();
      return unique.length;
    });
  }

  /** Deletes the ids present; resolves once durable. Returns how many existed. */
  delete(ids: string[]): Promise<number> {
    return this.lock.run(async () => {
      this.checkWritable();
      const seen = new Set<string>();
      const gone: Array<{ key: number; id: string; payload: string }> = [];
      for (const id of ids) {
        if (seen.has(id)) continue;
        seen.add(id);
        const key = this.store.keyOf(id);
        if (key === undefined) continue;
        gone.push({ key, id, payload: this.store.entry(key)?.payload ?? "{}" });
      }
      if (gone.length === 0) return 0;
      await this.wal.append(encodeDelete(gone));
      try {
        // Out of the index first: a search in between then simply misses the point.
        this.index.remove(gone.map((g) => g.key));
        for (const g of gone) this.filters.remove(g.key, JSON.parse(g.payload) as Record<string, unknown>);
        await this.store.write([], gone, this.nextKey);
      } catch (err) {
        this.markBroken(err);
        throw err;
      }
      this._count -= gone.length;
      this.churn += gone.length;
      for (const g of gone) this.touched?.add(g.key);
      for (const g of gone) this.sinceSnapshot.add(g.key);
      this.maybeSnapshot();
      this.maybeRebuild();
      return gone.length;
    });
  }

  // ---- reads --------------------------------------------------------------

  keyOf(id: string): number | undefined {
    return this.store.keyOf(id);
  }

  entry(key: number): { id: string; payload: string } | undefined {
    return this.store.entry(key);
  }

  vector(key: number): Float32Array | undefined {
    return this.store.vector(key);
  }

  /** Nearest neighbours as (key, distance), best first. */
  async search(query: Float32Array, o: SearchOptions): Promise<Neighbours> {
    this.checkReadable();
    if (this._count === 0) return { keys: [], distances: [] };
    const wanted = this.candidates(o.k);
    if (o.filter === null) {
      if (o.exact) return this.exactOver(null, query, o.k);
      return this.ranked(await this.batcher.search(query, Math.max(wanted, o.ef)), wanted, query, o.k);
    }
    const plan = new FilterPlan(this.filters, o.filter);
    const estimate = plan.estimate;
    if (estimate === 0) return { keys: [], distances: [] };
    if (o.exact || estimate <= this.opts.filterExactMax) return this.exactOver(plan.materialize(), query, o.k);

    // Over-fetch from HNSW: start from the expected number of candidates that
    // yields the wanted matches at this selectivity (x2 margin) and grow 4x until
    // they are found; past the cap, the exact scan of the matching set
    // guarantees k hits whenever k exist. Each fetch goes through the batcher, so
    // it shares a native call with the searches of the same beam width.
    let fetch = Math.max(o.ef, Math.ceil(((wanted * this._count) / estimate) * 2));
    for (;;) {
      fetch = Math.min(fetch, this._count, this.opts.filterMaxOverfetch);
      const res = await this.batcher.search(query, fetch);
      const out: Neighbours = { keys: [], distances: [] };
      for (let i = 0; i < res.keys.length && out.keys.length < wanted; i++) {
        const key = res.keys[i]!;
        if (plan.matches(key)) {
          out.keys.push(key);
          out.distances.push(res.distances[i]!);
        }
      }
      if (out.keys.length >= wanted) return this.ranked(out, wanted, query, o.k);
      if (fetch >= this._count || fetch >= this.opts.filterMaxOverfetch) break;
      fetch *= 4;
    }
    return this.exactOver(plan.materialize(), query, o.k);
  }

  /** How many graph candidates a search of k results ranks: k, or k x oversampling when rescoring. */
  private candidates(k: number): number {
    return this.meta.rescore ? Math.ceil(k * this.meta.oversampling) : k;
  }

  /**
   * The k best of the graph's first `wanted` candidates: in the graph's order, or, when the
   * collection rescores, by exact distance to the stored originals (whose distances are then
   * the ones answered).
   */
  private ranked(res: Neighbours, wanted: number, query: Float32Array, k: number): Neighbours {
    if (this.meta.rescore) return this.exactOver(res.keys.slice(0, wanted), query, k);
    return { keys: res.keys.slice(0, k), distances: res.distances.slice(0, k) };
  }

  /** Brute force over `keys` (null: the whole collection), in bounded chunks. */
  private exactOver(keys: number[] | null, query: Float32Array, k: number): Neighbours {
    const all = keys ?? this.store.allKeys();
    const candidates: Array<{ key: number; distance: number }> = [];
    for (let start = 0; start < all.length; start += EXACT_CHUNK_ROWS) {
      const chunk = this.store.gather(all.slice(start, start + EXACT_CHUNK_ROWS));
      const res = exactTopK(chunk.matrix, chunk.keys, this.meta.dims, query, k, this.meta.metric);
      res.keys.forEach((key, i) => {
        candidates.push({ key, distance: res.distances[i]! });
      });
    }
    candidates.sort((a, b) => a.distance - b.distance);
    const top = candidates.slice(0, k);
    return { keys: top.map((c) => c.key), distances: top.map((c) => c.distance) };
  }

  // ---- stats and lifecycle --------------------------------------------------

  stats(): CollectionStats {
    return {
      memoryBytes: this.index.memoryBytes,
      diskBytes: existsSync(this.dir) ? duBytes(this.dir) : 0,
      walBytes: this.walBytes,
      walRecords: this.wal.records,
      lastSnapshotMs: this.manifest?.takenAtMs ?? 0,
      indexChurn: this.indexChurn,
      lastRebuildMs: this.lastRebuildMs,
      rebuildInserted: this.builder?.inserted ?? 0,
      rebuildTotal: this.builder?.total ?? 0,
      lastSnapshotTookMs: Math.round(this.lastSnapshot.tookMs),
      lastSnapshotMaxStallMs: this.lastSnapshot.maxStallMs,
    };
  }

  /**
   * Takes a snapshot when anything was written since the last one; concurrent calls share one
   * run. The live graph is never saved: usearch's `save` is a synchronous native call (~0.3 s
   * per 100k x 768 f32), and every search would wait for it. A graph thread instead loads the
   * committed snapshot's graph, brings the keys written since up to their state in the store,
   * and writes the result. The write lock is held only to rotate the WAL: searches and writes
   * go on meanwhile. While a rebuild runs this does nothing: the rebuild ends with a snapshot of
   * its own graph.
   */
  snapshot(): Promise<void> {
    return this.startSnapshot(false);
  }

  /**
   * Stops writes and closes the files; with `snapshotFirst` a final snapshot makes the next
   * start fast, and without it (a drop) a snapshot in progress is abandoned.
   */
  async close(snapshotFirst: boolean): Promise<void> {
    if (this.closed) return;
    this.stopping = true;
    // A rebuild in progress is abandoned: the graph in use is complete, and the snapshot saves it.
    await this.builder?.terminate();
    await this.rebuilding?.catch(() => undefined);
    if (!snapshotFirst) await this.snapshotThread?.terminate();
    await this.snapshotting?.catch(() => undefined);
    if (snapshotFirst && !this.broken && !this.closed) {
      await this.startSnapshot(true).catch((err: unknown) => {
        this.opts.log.error({ err }, "final snapshot failed (the WAL still holds every write)");
      });
    }
    await this.lock.run(async () => {
      if (this.closed) return;
      this.closed = true;
      await this.wal.close();
      await this.store.close();
    });
  }

  // ---- rebuilds -------------------------------------------------------------

  /**
   * Builds a new graph of every stored point on a worker thread and swaps it in. HNSW deletes
   * (and so replaces) leave the graph routing around removed nodes, which costs recall as
   * churn accumulates (services/ann/README.md has the measurement). Searches and writes go on
   * meanwhile; writes made during the build are applied to the new graph before the swap, and
   * the new graph becomes the snapshot. Concurrent calls share one run. Resolves to false when
   * the collection closed first.
   */
  rebuild(): Promise<boolean> {
    if (this.rebuilding) return this.rebuilding;
    const run = this.rebuildRun().finally(() => {
      this.rebuilding = null;
    });
    this.rebuilding = run;
    return run;
  }

  private async rebuildRun(): Promise<boolean> {
    this.checkWritable();
    const started = performance.now();
    const churnAtStart = this.churn;
    const builder = new GraphBuilder(Collection.params(this.meta), this.opts.threads, rebuildPath(this.dir));
    this.builder = builder;
    // The builder reads every point after this rotation, each in its state then or later, so its
    // graph with the WAL from `walFrom` on is a snapshot (replay converges, see wal.ts).
    const touched = new Set<number>();
    const { walFrom, before } = await this.lock.run(async () => {
      this.touched = touched;
      return { walFrom: await this.wal.rotate(), before: this.takeSinceSnapshot() };
    });
    this.opts.log.info({ points: this._count, churn: churnAtStart }, "index rebuild started");
    let snapshotted = false;
    try {
      const fresh = await builder.build(this.store, () => this.closed || this.stopping);
      if (!fresh) return false;
      const swapped = await this.lock.run(async () => {
        if (this.closed || this.broken) return false;
        // Writes since the start: the store holds their outcome (a vector, or none when deleted).
        const live = this.store.gather(touched);
        const kept = new Set(live.keys);
        fresh.remove([...touched].filter((key) => !kept.has(key)));
        fresh.upsert(live.keys, live.matrix);
        this.index = fresh;
        this.churn -= churnAtStart;
        this.lastRebuildMs = Date.now();
        this.opts.log.info(
          { points: fresh.size, writesDuring: touched.size, ms: Math.round(performance.now() - started) },
          "index rebuilt and swapped in",
        );
        return true;
      });
      if (!swapped) return false;
      snapshotted = await this.commitGraphFile(builder.path, walFrom).catch((err: unknown) => {
        this.opts.log.error({ err }, "rebuilt graph swapped in, but its snapshot failed; the next snapshot covers it");
        return false;
      });
      return true;
    } catch (err) {
      this.rebuildFailedAtMs = Date.now();
      throw err;
    } finally {
      this.touched = null;
      this.builder = null;
      rmSync(builder.path, { force: true });
      // Not committed: the previous snapshot stays the base, and the keys written since it
      // are still to be brought into it.
      if (!snapshotted) for (const key of before) this.sinceSnapshot.add(key);
    }
  }

  private maybeRebuild(): void {
    const o = this.opts;
    if (o.rebuildChurn <= 0 || this.rebuilding || this.stopping || this._count < o.rebuildMinPoints) return;
    if (this.churn < o.rebuildChurn * this._count || Date.now() - this.rebuildFailedAtMs < REBUILD_RETRY_MS) return;
    setImmediate(() => {
      if (this.rebuilding || this.closed || this.stopping) return;
      this.rebuild().catch((err: unknown) =>
        o.log.error({ err }, "index rebuild failed; the current graph stays in use"),
      );
    });
  }

  // ---- snapshots ----------------------------------------------------------

  /** Starts a snapshot unless one runs; `onLoop` saves the live graph (see `snapshotRun`). */
  private startSnapshot(onLoop: boolean): Promise<void> {
    if (this.snapshotting) return this.snapshotting;
    const run = this.snapshotRun(onLoop).finally(() => {
      this.snapshotting = null;
    });
    this.snapshotting = run;
    return run;
  }

  /**
   * One snapshot at a fresh WAL segment. Written by a graph thread from the last snapshot and
   * the store, or, with `onLoop`, by saving the live graph in one native call on the event
   * loop: only at shutdown, when no request waits on the loop any more, where it is the
   * faster way and keeps the live graph.
   */
  private async snapshotRun(onLoop: boolean): Promise<void> {
    if (this.closed || this.broken || this.rebuilding || this.sinceSnapshot.size === 0) return;
    const started = performance.now();
    const stalls = monitorEventLoopDelay({ resolution: 10 });
    stalls.enable();
    // Writes wait on the lock, so every write before the new segment is in the store.
    const { walFrom, delta } = await this.lock.run(async () => ({
      walFrom: await this.wal.rotate(),
      delta: this.takeSinceSnapshot(),
    }));
    this.opts.log.info({ keys: delta.size, points: this._count, walFrom, onLoop }, "snapshot started");
    const base = this.manifest;
    const thread = onLoop ? null : new GraphThread(Collection.params(this.meta), this.opts.threads);
    this.snapshotThread = thread;
    let committed = false;
    try {
      if (thread === null) {
        // The live graph holds every write before `walFrom`, and maybe later ones: replay converges (wal.ts).
        committed = await this.commitSnapshot(walFrom, async (path) => this.index.save(path));
      } else {
        if (base) {
          // usearch trusts the file it loads, and a damaged one would crash the whole process.
          await checkIndexFile(this.dir, base);
          await thread.load(join(this.dir, base.indexFile));
        }
        // The store holds each key's state as of `walFrom` or later: replay converges (wal.ts).
        if (!(await thread.sync(this.store, [...delta], () => this.closed))) return;
        committed = await this.commitSnapshot(walFrom, async (path) => {
          await thread.save(path);
        });
      }
      if (!committed) return;
      this.lastSnapshot = { tookMs: performance.now() - started, maxStallMs: stalls.max / 1e6 };
      this.opts.log.info(
        { walFrom, ms: Math.round(this.lastSnapshot.tookMs), maxLoopStallMs: Math.round(this.lastSnapshot.maxStallMs) },
        "snapshot committed",
      );
    } finally {
      stalls.disable();
      this.snapshotThread = null;
      await thread?.terminate();
      if (!committed) for (const key of delta) this.sinceSnapshot.add(key);
    }
  }

  /** Commits a graph written to `path` from the store at WAL segment `walFrom` or later as the snapshot at `walFrom`. */
  private async commitGraphFile(path: string, walFrom: number): Promise<boolean> {
    return this.commitSnapshot(walFrom, (tmp) => rename(path, tmp));
  }

  /**
   * Writes an index file through `save` and commits it as the snapshot at WAL segment
   * `walFrom`, then deletes what it replaces. Commits are serialised and only move forward:
   * false (nothing written) when a snapshot at or past `walFrom` is already committed, whose
   * cleanup may have deleted WAL this one would need.
   */
  private commitSnapshot(walFrom: number, save: (path: string) => Promise<void>): Promise<boolean> {
    return this.commitLock.run(async () => {
      if (this.manifest && this.manifest.walFrom >= walFrom) return false;
      const file = await writeIndexFile(this.dir, walFrom, save, () => this.faultStall());
      // The WAL before `walFrom` goes below: the store must be on disk up to it first.
      await this.store.flushed();
      const manifest: SnapshotManifest = {
        indexFile: file.name,
        walFrom,
        takenAtMs: Date.now(),
        points: this._count,
        indexBytes: file.bytes,
        indexCrc32: file.crc32,
      };
      await commitManifest(this.dir, manifest);
      this.manifest = manifest;
      try {
        this.wal.removeBefore(walFrom);
        sweep(this.dir, manifest, false);
      } catch (err) {
        // Harmless: leftovers are swept at the next start.
        this.opts.log.warn({ err }, "snapshot cleanup failed");
      }
      return true;
    });
  }

  /** Fault injection for the crash test: a window in which the temp file exists and nothing is committed yet. */
  private async faultStall(): Promise<void> {
    const ms = this.opts.faultSnapshotStallMs;
    if (ms <= 0) return;
    this.opts.log.warn({ ms }, "snapshot index file written; stalling before the commit (FAULT_SNAPSHOT_STALL_MS)");
    await new Promise((r) => setTimeout(r, ms));
  }

  /** Hands over the keys written since the snapshot and starts a new set (callers hold the write lock). */
  private takeSinceSnapshot(): Set<number> {
    const taken = this.sinceSnapshot;
    this.sinceSnapshot = new Set();
    return taken;
  }

  private maybeSnapshot(): void {
    if (this.opts.snapshotWalBytes > 0 && this.wal.bytes >= this.opts.snapshotWalBytes && !this.snapshotting) {
      setImmediate(() => {
        if (this.stopping) return;
        this.snapshot().catch((err: unknown) => this.opts.log.error({ err }, "snapshot failed"));
      });
    }
  }

  private checkReadable(): void {
    if (this.closed) throw new UnavailableError(`collection ${this.meta.name} is closed (dropped or shutting down)`);
  }

  private checkWritable(): void {
    this.checkReadable();
    if (this.broken) {
      throw new FailedPreconditionError(
        `collection ${this.meta.name} refuses writes after an internal error (${this.broken.message}); restart the service to replay its WAL`,
      );
    }
  }

  private markBroken(err: unknown): void {
    this.broken = err instanceof Error ? err : new Error(String(err));
    this.opts.log.error({ err }, "write durable in the WAL but not applied in memory: collection now read-only");
  }
}

/** The rebuild thread's output file: a `.tmp`, so a crash leaves nothing `sweep` keeps. */
function rebuildPath(dir: string): string {
  return join(dir, `rebuild-${Date.now()}.usearch.tmp`);
}

function matrixOf(points: WalPoint[], dims: number): Float32Array {
  const m = new Float32Array(points.length * dims);
  const bytes = new Uint8Array(m.buffer);
  points.forEach((p, i) => {
    bytes.set(p.vector.subarray(0, dims * 4), i * dims * 4);
  });
  return m;
}

function matrixOfValues(points: NewPoint[], dims: number): Float32Array {
  const m = new Float32Array(points.length * dims);
  points.forEach((p, i) => {
    m.set(p.values, i * dims);
  });
  return m;
}

function duBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? duBytes(p) : e.isFile() ? statSync(p).size : 0;
  }
  return total;
}
