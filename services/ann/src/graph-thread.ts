import { Worker } from "node:worker_threads";
import { type HnswParams, PARALLEL_ADD_MIN_SIZE, usearchOptions } from "./hnsw.js";

const THREAD_ENTRY = new URL("./graph-thread.mjs", import.meta.url);

/** Rows read from the source and moved to the thread at a time; the event loop runs in between. */
const CHUNK_ROWS = 4096;

/** Where the points come from (the payload store). */
export interface VectorSource {
  /** Row-major vectors of the keys that still exist, in a buffer of its own. */
  gather(keys: Iterable<number>): { keys: number[]; matrix: Float32Array };
}

type Operation =
  | { kind: "upsert"; keys: BigUint64Array; matrix: Float32Array }
  | { kind: "remove"; keys: BigUint64Array }
  | { kind: "load" | "save"; path: string };
type Reply = { ok: true; size: number } | { ok: false; message: string };

/**
 * A usearch graph of its own on a worker thread (graph-thread.mjs), for the work that would
 * stall the event loop for seconds to minutes: building a graph (rebuild.ts) and writing a
 * snapshot (collection.ts). Operations run in the order sent; each resolves with the graph's
 * size after it. Vectors are moved to the thread, not copied. One owner; `terminate` ends it,
 * mid-operation too, and every operation still waiting then rejects.
 */
export class GraphThread {
  private readonly worker: Worker;
  private readonly waiting: Array<{ resolve(size: number): void; reject(err: Error): void }> = [];
  private failure: Error | null = null;

  constructor(params: HnswParams, threads: number) {
    this.worker = new Worker(THREAD_ENTRY, {
      // Plain JavaScript needs none of the process's flags; a TypeScript loader inherited from
      // them (tsx, in development and tests) doubled the thread's start to ~150 ms.
      execArgv: [],
      workerData: { options: usearchOptions(params), threads, serialFirst: PARALLEL_ADD_MIN_SIZE },
    });
    this.worker.on("message", (reply: Reply) => {
      const w = this.waiting.shift();
      if (reply.ok) w?.resolve(reply.size);
      else w?.reject(new Error(`graph thread: ${reply.message}`));
    });
    this.worker.on("error", (err) => this.fail(err));
    this.worker.on("exit", (code) => this.fail(new Error(`graph thread exited (code ${code})`)));
  }

  load(path: string): Promise<number> {
    return this.send({ kind: "load", path });
  }

  save(path: string): Promise<number> {
    return this.send({ kind: "save", path });
  }

  /**
   * Brings the thread's graph to the source's state for `keys`, a chunk per turn of the event
   * loop: a key with a vector is (re)inserted, a key without one is removed. Returns false when
   * `stopped()` turned true between chunks. `onRows` counts the rows done.
   */
  async sync(
    source: VectorSource,
    keys: number[],
    stopped: () => boolean,
    onRows: (rows: number) => void = () => undefined,
  ): Promise<boolean> {
    for (let i = 0; i < keys.length; i += CHUNK_ROWS) {
      if (stopped()) return false;
      const chunk = keys.slice(i, i + CHUNK_ROWS);
      const live = source.gather(chunk);
      if (live.keys.length < chunk.length) {
        const kept = new Set(live.keys);
        await this.send({ kind: "remove", keys: bigKeys(chunk.filter((k) => !kept.has(k))) });
      }
      if (live.keys.length > 0) await this.send({ kind: "upsert", keys: bigKeys(live.keys), matrix: live.matrix });
      onRows(chunk.length);
    }
    return !stopped();
  }

  async terminate(): Promise<void> {
    this.fail(new Error("graph thread stopped"));
    await this.worker.terminate();
  }

  private send(op: Operation): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      const moved = op.kind === "upsert" ? [op.keys.buffer as ArrayBuffer, op.matrix.buffer as ArrayBuffer] : [];
      this.worker.postMessage(op, moved);
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.splice(0)) w.reject(this.failure);
  }
}

function bigKeys(keys: number[]): BigUint64Array {
  return BigUint64Array.from(keys, (k) => BigInt(k));
}
