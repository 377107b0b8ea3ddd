import { Worker } from "node:worker_threads";
import { type HnswParams, PARALLEL_ADD_MIN_SIZE, usearchOptions } from "./hnsw.js";

const THREAD_ENTRY = new URL("./rebuild-thread.mjs", import.meta.url);

/**
 * A new HNSW graph built on a worker thread of its own from rows sent to it in chunks, then
 * written to `path` for the caller to load. The rows are moved to the thread, not copied.
 */
export class GraphBuilder {
  private readonly thread: Worker;
  private failure: Error | null = null;
  /** True once `terminate` was called: a failure after it is the stop, not a fault. */
  abandoned = false;
  private waiting: { resolve(size: number): void; reject(err: Error): void } | null = null;

  constructor(
    params: HnswParams,
    threads: number,
    readonly path: string,
  ) {
    this.thread = new Worker(THREAD_ENTRY, {
      workerData: { options: usearchOptions(params), threads, serialFirst: PARALLEL_ADD_MIN_SIZE, path },
    });
    this.thread.on("message", (msg: { kind: "saved"; size: number } | { kind: "failed"; message: string }) => {
      if (msg.kind === "saved") this.settle(null, msg.size);
      else this.settle(new Error(`index rebuild thread: ${msg.message}`));
    });
    this.thread.on("error", (err) => this.settle(err));
    this.thread.on("exit", (code) => this.settle(new Error(`index rebuild thread exited (code ${code})`)));
  }

  /** Queues rows for insertion; `matrix` (row-major, one row per key) is moved to the thread. */
  add(keys: number[], matrix: Float32Array): void {
    if (this.failure) throw this.failure;
    const big = BigUint64Array.from(keys, (k) => BigInt(k));
    this.thread.postMessage({ kind: "add", keys: big, matrix }, [big.buffer, matrix.buffer as ArrayBuffer]);
  }

  /** Resolves with the graph's size once every queued row is in it and the file is written. */
  finish(): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.thread.postMessage({ kind: "save" });
    });
  }

  /** Stops the thread, mid-insertion too; a pending `finish` rejects. */
  async terminate(): Promise<void> {
    this.abandoned = true;
    await this.thread.terminate();
  }

  private settle(err: Error | null, size = 0): void {
    if (err) this.failure ??= err;
    const waiting = this.waiting;
    this.waiting = null;
    if (!waiting) return;
    if (err) waiting.reject(err);
    else waiting.resolve(size);
  }
}
