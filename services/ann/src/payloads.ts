import { type Database, open, type RootDatabase } from "lmdb";
import type { WalPoint } from "./wal.js";

/**
 * The payload store of one collection (LMDB, one environment per collection
 * directory): user id -> key, key -> (id, payload JSON), key -> vector
 * (packed float32, exactly as received: `Get{with_vectors}` and exact
 * search read the original values even when the index is quantised).
 *
 * Commits go through LMDB's own crash-safe commit; they are not what makes a
 * write durable (the WAL is). A snapshot waits for `flushed()` before it lets
 * the WAL go, so after a crash this store is never behind the snapshot, and
 * replaying the WAL over it converges (see wal.ts).
 */

interface PointEntry {
  id: string;
  /** The payload JSON text as stored (validated: a JSON object). */
  p: string;
}

const NEXT_KEY = "nextKey";

export class PayloadStore {
  private constructor(
    private readonly env: RootDatabase,
    private readonly ids: Database<number, string>,
    private readonly points: Database<PointEntry, number>,
    private readonly vectors: Database<Buffer, number>,
    private readonly meta: Database<number, string>,
    readonly dims: number,
  ) {}

  static open(path: string, dims: number): PayloadStore {
    const env = open({ path, maxDbs: 8 });
    return new PayloadStore(
      env,
      env.openDB<number, string>({ name: "ids", encoding: "msgpack" }),
      env.openDB<PointEntry, number>({ name: "points", keyEncoding: "uint32", encoding: "msgpack" }),
      env.openDB<Buffer, number>({ name: "vectors", keyEncoding: "uint32", encoding: "binary" }),
      env.openDB<number, string>({ name: "meta", encoding: "msgpack" }),
      dims,
    );
  }

  /** The smallest key never handed out (keys are never reused). */
  get nextKey(): number {
    return this.meta.get(NEXT_KEY) ?? 0;
  }

  keyOf(id: string): number | undefined {
    return this.ids.get(id);
  }

  entry(key: number): { id: string; payload: string } | undefined {
    const e = this.points.get(key);
    return e ? { id: e.id, payload: e.p } : undefined;
  }

  vector(key: number): Float32Array | undefined {
    const raw = this.vectors.getBinaryFast(key);
    if (!raw) return undefined;
    const out = new Float32Array(this.dims);
    new Uint8Array(out.buffer).set(raw.subarray(0, this.dims * 4));
    return out;
  }

  /** Copies the vectors of `keys` into one row-major matrix; keys without a vector are dropped. */
  gather(keys: Iterable<number>): { keys: number[]; matrix: Float32Array } {
    const list = [...keys];
    const matrix = new Float32Array(list.length * this.dims);
    const bytes = new Uint8Array(matrix.buffer);
    const kept: number[] = [];
    for (const key of list) {
      const raw = this.vectors.getBinaryFast(key);
      if (!raw) continue;
      bytes.set(raw.subarray(0, this.dims * 4), kept.length * this.dims * 4);
      kept.push(key);
    }
    return { keys: kept, matrix: matrix.subarray(0, kept.length * this.dims) };
  }

  /** Every stored point (startup: rebuilding the filter index and the count). */
  *scan(): Iterable<{ key: number; id: string; payload: string }> {
    for (const { key, value } of this.points.getRange()) yield { key, id: value.id, payload: value.p };
  }

  allKeys(): number[] {
    const keys: number[] = [];
    for (const key of this.vectors.getKeys()) keys.push(key);
    return keys;
  }

  /** Applies one batch in one LMDB transaction; resolves once committed and visible to readers. */
  async write(upserts: WalPoint[], deletes: Array<{ key: number; id: string }>, nextKey: number): Promise<void> {
    await this.env.transaction(() => this.apply(upserts, deletes, nextKey));
  }

  /** The same, synchronously (WAL replay at startup, before anything else runs). */
  writeSync(upserts: WalPoint[], deletes: Array<{ key: number; id: string }>, nextKey: number): void {
    this.env.transactionSync(() => this.apply(upserts, deletes, nextKey));
  }

  /** Several batches, in order, in one transaction (replay). */
  writeManySync(batches: Array<{ upserts: WalPoint[]; deletes: Array<{ key: number; id: string }> }>): void {
    this.env.transactionSync(() => {
      for (const b of batches) this.apply(b.upserts, b.deletes, 0);
    });
  }

  /** Resolves once every committed write is on disk. */
  async flushed(): Promise<void> {
    await this.env.flushed;
  }

  async close(): Promise<void> {
    await this.env.close();
  }

  // Blind writes keyed by the record's own keys: applying a batch twice, or
  // over a store that already holds later writes, ends in the same state as
  // applying the whole log once (see wal.ts).
  private apply(upserts: WalPoint[], deletes: Array<{ key: number; id: string }>, nextKey: number): void {
    for (const d of deletes) {
      if (this.ids.get(d.id) === d.key) this.ids.remove(d.id);
      this.points.remove(d.key);
      this.vectors.remove(d.key);
    }
    for (const p of upserts) {
      this.ids.put(p.id, p.key);
      this.points.put(p.key, { id: p.id, p: p.payload });
      this.vectors.put(p.key, Buffer.from(p.vector.buffer, p.vector.byteOffset, p.vector.byteLength));
    }
    // Never behind the keys stored: a snapshot may drop the WAL that held them.
    let next = nextKey;
    for (const p of upserts) next = Math.max(next, p.key + 1);
    if (next > this.nextKey) this.meta.put(NEXT_KEY, next);
  }
}
