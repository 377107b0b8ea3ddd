import type { Neighbours } from "./hnsw.js";

interface Waiting {
  query: Float32Array;
  wanted: number;
  ef: number;
  resolve(res: Neighbours): void;
  reject(err: unknown): void;
}

/**
 * Coalesces the plain HNSW searches of one collection that arrive in the same turn of the event
 * loop (one poll phase of gRPC reads) into one batched native call, which usearch spreads over
 * its thread pool; answered one by one, every search would run single-threaded on the event
 * loop. A lone search waits one `setImmediate`. Searches with another (wanted, ef) go in a call
 * of their own.
 */
export class SearchBatcher {
  private queue: Waiting[] = [];
  private scheduled = false;

  constructor(
    private readonly searchBatch: (queries: Float32Array[], wanted: number, ef: number) => Neighbours[],
    private readonly maxBatch: number,
  ) {}

  search(query: Float32Array, wanted: number, ef: number): Promise<Neighbours> {
    return new Promise((resolve, reject) => {
      this.queue.push({ query, wanted, ef, resolve, reject });
      if (this.queue.length >= this.maxBatch) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.flush();
        });
      }
    });
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    const groups = new Map<string, Waiting[]>();
    for (const w of batch) {
      const key = `${w.wanted}/${w.ef}`;
      const group = groups.get(key);
      if (group) group.push(w);
      else groups.set(key, [w]);
    }
    for (const group of groups.values()) {
      const { wanted, ef } = group[0] as Waiting;
      try {
        const results = this.searchBatch(
          group.map((w) => w.query),
          wanted,
          ef,
        );
        group.forEach((w, i) => {
          w.resolve(results[i] as Neighbours);
        });
      } catch (err) {
        for (const w of group) w.reject(err);
      }
    }
  }
}
