import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { rename } from "node:fs/promises";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { FailedPreconditionError, type Logger, ResourceExhaustedError, UnavailableError } from "@tandem/service-kit";
import type { CollectionMeta, CollectionStats, NewPoint } from "./backend.js";
import { SearchBatcher } from "./batcher.js";
import type { PayloadIndex } from "./filter.js";
import { GraphThread } from "./graph-thread.js";
import type { HnswIndex, Neighbours } from "./hnsw.js";
import type { PayloadStore } from "./payloads.js";
import { GraphBuilder } from "./rebuild.js";
import { graphParams, rebuildPath, recover } from "./recovery.js";
import { type SearchOptions, SearchPlanner } from "./search-plan.js";
import {
  checkIndexFile,
  commitManifest,
  type SnapshotManifest,
  sweep,
  writeFileAtomic,
  writeIndexFile,
} from "./snapshot.js";
import { encodeDelete, encodeUpsert, type Wal, type WalPoint } from "./wal.js";

export type { CollectionMeta, NewPoint, SearchOptions };

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

/** Serialises async critical sections (a promise chain). */
class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

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
  private readonly planner: SearchPlanner;

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
    // The batcher reads `this.index` when it runs, so a rebuild's swap is seen.
    const batcher = new SearchBatcher(
      (queries, beam) => this.index.searchBatch(queries, beam, beam),
      opts.searchBatchMax,
    );
    this.planner = new SearchPlanner(meta, opts, batcher, filters, store, () => this._count);
  }

  /** Writes collection.json into an empty directory (the registry renames it into place). */
  static async initialise(dir: string, meta: CollectionMeta): Promise<void> {
    mkdirSync(dir, { recursive: true });
    await writeFileAtomic(join(dir, "collection.json"), JSON.stringify(meta));
  }

  /** Restart path (recovery.ts): snapshot + WAL replay, then serving. */
  static async open(dir: string, opts: CollectionOptions): Promise<Collection> {
    const r = await recover(dir, opts);
    const c = new Collection(
      dir,
      r.meta,
      { ...opts, log: r.log },
      r.index,
      r.store,
      r.filters,
      r.wal,
      r.manifest,
      r.count,
      r.nextKey,
      r.sinceSnapshot,
    );
    // The new graph holds the whole store, which holds the whole WAL: a snapshot at the fresh
    // segment, so the next start loads it instead of building it again.
    if (r.built) await c.commitGraphFile(r.built, r.wal.currentSegment);
    r.log.info(
      { points: r.count, snapshot: c.manifest?.indexFile ?? null, walRecordsReplayed: r.walRecordsReplayed },
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

  /** Nearest neighbours as (key, distance), best first (search-plan.ts). */
  async search(query: Float32Array, o: SearchOptions): Promise<Neighbours> {
    this.checkReadable();
    return this.planner.search(query, o);
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
    const builder = new GraphBuilder(graphParams(this.meta), this.opts.threads, rebuildPath(this.dir));
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
    const thread = onLoop ? null : new GraphThread(graphParams(this.meta), this.opts.threads);
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
