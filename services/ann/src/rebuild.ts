import { rmSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { HnswIndex, type HnswParams, PARALLEL_ADD_MIN_SIZE, usearchOptions } from "./hnsw.js";

const THREAD_ENTRY = new URL("./rebuild-thread.mjs", import.meta.url);

/** Rows read from the source and moved to the thread at a time; the event loop runs in between. */
const CHUNK_ROWS = 4096;

/** Where the points come from (the payload store). */
export interface VectorSource {
  allKeys(): number[];
  /** Row-major vectors of the keys that still exist, in a buffer of its own. */
  gather(keys: Iterable<number>): { keys: number[]; matrix: Float32Array };
}

/**
 * A new HNSW graph of every point of a source, built on a worker thread of its own
 * (rebuild-thread.mjs): usearch's `add` is a synchronous native call, minutes long for a large
 * collection, and on the main thread it would stop every request of the service for that long.
 * The thread writes the graph to `path`, which `build` loads and removes. One use per builder.
 */
export class GraphBuilder {
  private readonly thread: Worker;
  private failure: Error | null = null;
  private waiting: { resolve(): void; reject(err: Error): void } | null = null;
  /** True once `terminate` was called: a failure after it is the stop, not a fault. */
  abandoned = false;
  /** Points in the new graph so far, of `total` (Stats shows them while a rebuild runs). */
  inserted = 0;
  total = 0;

  constructor(
    private readonly params: HnswParams,
    private readonly threads: number,
    private readonly path: string,
  ) {
    this.thread = new Worker(THREAD_ENTRY, {
      workerData: { options: usearchOptions(params), threads, serialFirst: PARALLEL_ADD_MIN_SIZE, path },
    });
    type Message = { kind: "added"; rows: number } | { kind: "saved" } | { kind: "failed"; message: string };
    this.thread.on("message", (msg: Message) => {
      if (msg.kind === "added") this.inserted += msg.rows;
      else this.settle(msg.kind === "saved" ? null : new Error(`index rebuild thread: ${msg.message}`));
    });
    this.thread.on("error", (err) => this.settle(err));
    this.thread.on("exit", (code) => this.settle(new Error(`index rebuild thread exited (code ${code})`)));
  }

  /**
   * Moves every point of `source` to the thread, a chunk per turn of the event loop, and
   * resolves with the graph it built; null when `stopped()` turned true between chunks or the
   * builder was terminated. The thread is stopped and the file removed either way.
   */
  async build(source: VectorSource, stopped: () => boolean): Promise<HnswIndex | null> {
    try {
      const keys = source.allKeys();
      this.total = keys.length;
      for (let i = 0; i < keys.length; i += CHUNK_ROWS) {
        if (stopped() || this.abandoned) return null;
        if (this.failure) throw this.failure;
        const chunk = source.gather(keys.slice(i, i + CHUNK_ROWS));
        const big = BigUint64Array.from(chunk.keys, (k) => BigInt(k));
        this.thread.postMessage({ kind: "add", keys: big, matrix: chunk.matrix }, [
          big.buffer,
          chunk.matrix.buffer as ArrayBuffer,
        ]);
        await new Promise((resolve) => setImmediate(resolve));
      }
      await new Promise<void>((resolve, reject) => {
        if (this.failure) return reject(this.failure);
        this.waiting = { resolve, reject };
        this.thread.postMessage({ kind: "save" });
      });
      return HnswIndex.load(this.params, this.path, this.threads);
    } catch (err) {
      if (stopped() || this.abandoned) return null;
      throw err;
    } finally {
      await this.terminate();
      rmSync(this.path, { force: true });
    }
  }

  /** Stops the thread, mid-insertion too; `build` then resolves with null. */
  async terminate(): Promise<void> {
    this.abandoned = true;
    await this.thread.terminate();
  }

  private settle(err: Error | null): void {
    if (err) this.failure ??= err;
    const waiting = this.waiting;
    this.waiting = null;
    if (err) waiting?.reject(err);
    else waiting?.resolve();
  }
}
