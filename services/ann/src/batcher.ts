import type { Neighbours } from "./hnsw.js";

interface Waiting {
  query: Float32Array;
  beam: number;
  resolve(res: Neighbours): void;
  reject(err: unknown): void;
}

/**
 * Coalesces the HNSW searches of one collection that arrive in the same turn of the event
 * loop (one poll phase of gRPC reads) into one batched native call, which usearch spreads over
 * its thread pool; answered one by one, every search would run single-threaded on the event
 * loop. A lone search waits one `setImmediate`.
 *
 * A batch is keyed by the beam width alone: usearch's native call takes one result count for
 * every query of a batch, and that count is the beam (hnsw.ts), so a plain search of k = 10 at
 * ef = 64 and a filtered over-fetch of 64 candidates are the same native work and share a call.
 * Each caller keeps the prefix it wants.
 */
export class SearchBatcher {
  private queue: Waiting[] = [];
  private scheduled = false;

  constructor(
    private readonly searchBatch: (queries: Float32Array[], beam: number) => Neighbours[],
    private readonly maxBatch: number,
  ) {}

  /** Up to `beam` nearest keys, best first: an HNSW beam of that width. */
  search(query: Float32Array, beam: number): Promise<Neighbours> {
    return new Promise((resolve, reject) => {
      this.queue.push({ query, beam, resolve, reject });
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
    const groups = new Map<number, Waiting[]>();
    for (const w of batch) {
      const group = groups.get(w.beam);
      if (group) group.push(w);
      else groups.set(w.beam, [w]);
    }
    for (const [beam, group] of groups) {
      try {
        const results = this.searchBatch(
          group.map((w) => w.query),
          beam,
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
