import type {
  BackendFactory,
  BackendHit,
  BackendSearch,
  CollectionBackend,
  CollectionMeta,
  CollectionStats,
  NewPoint,
  StoredPoint,
} from "./backend.js";
import { Collection, type CollectionOptions } from "./collection.js";
import { scoreOf } from "./hnsw.js";

/**
 * The embedded backend: a `Collection` (usearch + WAL + snapshots + LMDB in this process) in
 * the seam's terms. The translation from usearch's internal keys to ids, and from its
 * distances to the API's scores, happens here and nowhere above.
 */
export class EmbeddedBackend implements CollectionBackend {
  constructor(private readonly collection: Collection) {}

  static factory(opts: CollectionOptions): BackendFactory {
    return {
      initialise: (dir, meta) => Collection.initialise(dir, meta),
      open: async (dir) => new EmbeddedBackend(await Collection.open(dir, opts)),
    };
  }

  get meta(): CollectionMeta {
    return this.collection.meta;
  }

  get count(): number {
    return this.collection.count;
  }

  get walBytes(): number {
    return this.collection.walBytes;
  }

  get indexChurn(): number {
    return this.collection.indexChurn;
  }

  upsert(points: NewPoint[]): Promise<number> {
    return this.collection.upsert(points);
  }

  delete(ids: string[]): Promise<number> {
    return this.collection.delete(ids);
  }

  async get(ids: string[], withVectors: boolean): Promise<Array<StoredPoint | undefined>> {
    return ids.map((id) => {
      const key = this.collection.keyOf(id);
      return key === undefined ? undefined : this.point(key, withVectors);
    });
  }

  async search(query: Float32Array, o: BackendSearch): Promise<BackendHit[]> {
    const c = this.collection;
    const res = await c.search(query, o);
    const hits: BackendHit[] = [];
    res.keys.forEach((key, i) => {
      const point = this.point(key, o.withVectors);
      // Deleted between the index and the store read.
      if (point) hits.push({ ...point, score: scoreOf(c.meta.metric, res.distances[i]!) });
    });
    return hits;
  }

  async stats(): Promise<CollectionStats> {
    return this.collection.stats();
  }

  rebuild(): Promise<boolean> {
    return this.collection.rebuild();
  }

  snapshot(): Promise<void> {
    return this.collection.snapshot();
  }

  close(snapshotFirst: boolean): Promise<void> {
    return this.collection.close(snapshotFirst);
  }

  private point(key: number, withVector: boolean): StoredPoint | undefined {
    const entry = this.collection.entry(key);
    if (!entry) return undefined;
    return { id: entry.id, payload: entry.payload, vector: withVector ? this.collection.vector(key) : undefined };
  }
}
