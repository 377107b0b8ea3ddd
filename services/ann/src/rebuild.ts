import { rmSync } from "node:fs";
import { GraphThread, type VectorSource } from "./graph-thread.js";
import { HnswIndex, type HnswParams } from "./hnsw.js";

/** Where a rebuild's points come from (the payload store). */
export interface PointSource extends VectorSource {
  allKeys(): number[];
}

/**
 * A new HNSW graph of every point of a source, built on a graph thread (graph-thread.ts):
 * usearch's `add` is a synchronous native call, minutes long for a large collection, and on the
 * main thread it would stop every request of the service for that long. The thread writes the
 * graph to `path`, which `build` loads and leaves in place: the caller commits it as a snapshot
 * or removes it. One use per builder.
 */
export class GraphBuilder {
  private readonly thread: GraphThread;
  /** True once `terminate` was called: a failure after it is the stop, not a fault. */
  abandoned = false;
  /** Points in the new graph so far, of `total` (Stats shows them while a rebuild runs). */
  inserted = 0;
  total = 0;

  constructor(
    private readonly params: HnswParams,
    private readonly threads: number,
    readonly path: string,
  ) {
    this.thread = new GraphThread(params, threads);
  }

  /**
   * Moves every point of `source` to the thread, a chunk per turn of the event loop, and
   * resolves with the graph it built (also written to `path`); null when `stopped()` turned
   * true between chunks or the builder was terminated. The thread is stopped either way, and
   * the file removed unless a graph is returned.
   */
  async build(source: PointSource, stopped: () => boolean): Promise<HnswIndex | null> {
    let built: HnswIndex | null = null;
    try {
      const keys = source.allKeys();
      this.total = keys.length;
      const halted = () => stopped() || this.abandoned;
      const done = await this.thread.sync(source, keys, halted, (rows) => {
        this.inserted += rows;
      });
      if (!done) return null;
      await this.thread.save(this.path);
      built = HnswIndex.load(this.params, this.path, this.threads);
      return built;
    } catch (err) {
      if (stopped() || this.abandoned) return null;
      throw err;
    } finally {
      await this.thread.terminate();
      if (!built) rmSync(this.path, { force: true });
    }
  }

  /** Stops the thread, mid-insertion too; `build` then resolves with null. */
  async terminate(): Promise<void> {
    this.abandoned = true;
    await this.thread.terminate();
  }
}
