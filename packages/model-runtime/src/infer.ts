import { Worker } from "node:worker_threads";
import { InferenceSession, Tensor } from "onnxruntime-node";
import type { Backend, BackendLoader, ExecutionProvider, RawOutput } from "./backend.js";
import type { Tokenized } from "./tokenize.js";

/** What the inference thread (infer-thread.mjs) sends back. */
type ThreadMessage =
  | { kind: "ready"; inputNames: string[]; outputNames: string[] }
  | { kind: "failed"; message: string }
  | { kind: "result"; id: number; data: Float32Array; dims: number[] }
  | { kind: "error"; id: number; message: string }
  | { kind: "released" };

interface Pending {
  resolve(msg: { data: Float32Array; dims: number[] }): void;
  reject(err: Error): void;
}

const THREAD_ENTRY = new URL("./infer-thread.mjs", import.meta.url);

/**
 * The onnxruntime backend: a session over a padded int64 batch. The session
 * lives on a thread of its own: onnxruntime-node runs a graph on the calling
 * thread, and a teacher batch of seconds there would stall the service's event
 * loop (BullMQ lock renewal, gRPC acks, health checks) for as long. The thread
 * keeps the process alive only while a run is in flight. Runs within
 * `inlineMaxTokens` go to a second session on the calling thread instead: a
 * few milliseconds of event loop for a query, against two thread wake-ups.
 */
class OrtBackend implements Backend {
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  /** Why runs are refused from now on: the model was released, or its thread died. */
  private unusable: Error | null = null;

  constructor(
    private readonly thread: Worker,
    readonly provider: ExecutionProvider,
    private readonly outputName: string,
    private readonly needsTokenTypes: boolean,
    private readonly inline: { session: InferenceSession; maxTokens: number } | null,
  ) {
    thread.on("message", (msg: ThreadMessage) => {
      if (msg.kind !== "result" && msg.kind !== "error") return;
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (this.pending.size === 0) thread.unref();
      if (msg.kind === "result") p?.resolve(msg);
      else p?.reject(new Error(`inference failed: ${msg.message}`));
    });
    thread.on("exit", (code) => this.fail(new Error(`inference thread exited (code ${code})`)));
    thread.on("error", (err) => this.fail(new Error(`inference thread crashed: ${err.message}`)));
    thread.unref();
  }

  async run(items: readonly Tokenized[]): Promise<RawOutput> {
    if (this.unusable) throw this.unusable;
    const batch = items.length;
    let seqLen = 0;
    for (const it of items) seqLen = Math.max(seqLen, it.ids.length);
    const ids = new BigInt64Array(batch * seqLen);
    const mask64 = new BigInt64Array(batch * seqLen);
    const mask = new Uint8Array(batch * seqLen);
    for (let b = 0; b < batch; b++) {
      const row = (items[b] as Tokenized).ids;
      const base = b * seqLen;
      for (let t = 0; t < row.length; t++) {
        ids[base + t] = BigInt(row[t] as number);
        mask64[base + t] = 1n;
        mask[base + t] = 1;
      }
    }
    const feeds: Record<string, BigInt64Array> = { input_ids: ids, attention_mask: mask64 };
    if (this.needsTokenTypes) feeds.token_type_ids = new BigInt64Array(batch * seqLen);
    if (this.inline && batch * seqLen <= this.inline.maxTokens) {
      const tensors: Record<string, Tensor> = {};
      for (const [name, data] of Object.entries(feeds)) tensors[name] = new Tensor("int64", data, [batch, seqLen]);
      const out = (await this.inline.session.run(tensors, [this.outputName]))[this.outputName] as Tensor;
      return { data: out.data as Float32Array, batch, seqLen, width: out.dims[out.dims.length - 1] as number, mask };
    }
    const id = this.nextId++;
    const result = new Promise<{ data: Float32Array; dims: number[] }>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
    });
    this.thread.ref();
    this.thread.postMessage(
      { kind: "run", id, feeds, dims: [batch, seqLen], output: this.outputName },
      Object.values(feeds).map((f) => f.buffer as ArrayBuffer),
    );
    const { data, dims } = await result;
    return { data, batch, seqLen, width: dims[dims.length - 1] as number, mask };
  }

  async release(): Promise<void> {
    if (this.unusable) return;
    this.unusable = new Error("the model was released");
    await this.inline?.session.release();
    this.thread.ref();
    const released = firstMessage(this.thread, "released");
    this.thread.postMessage({ kind: "release" });
    await released;
    await this.thread.terminate();
  }

  /** The thread is gone: every run in flight, and every later one, fails with why. */
  private fail(err: Error): void {
    this.unusable ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

/** The default backend of `EmbeddingModel.load`. */
export const loadOrtBackend: BackendLoader = async (graph, opts, onFallback) => {
  let lastError: Error | undefined;
  for (const provider of opts.providers) {
    const options: InferenceSession.SessionOptions = {
      executionProviders: [provider],
      graphOptimizationLevel: "all",
      intraOpNumThreads: opts.intraOpThreads,
      interOpNumThreads: 1,
      executionMode: "sequential",
    };
    const thread = new Worker(THREAD_ENTRY, { workerData: { onnxPath: graph.path, options } });
    try {
      const ready = await firstMessage(thread);
      if (ready.kind !== "ready") throw new Error(ready.kind === "failed" ? ready.message : `unexpected ${ready.kind}`);
      if (!ready.outputNames.includes(graph.output)) {
        throw new Error(`graph has no output "${graph.output}" (outputs: ${ready.outputNames.join(", ")})`);
      }
      for (const required of ["input_ids", "attention_mask"]) {
        if (!ready.inputNames.includes(required)) {
          throw new Error(`graph has no input "${required}" (inputs: ${ready.inputNames.join(", ")})`);
        }
      }
      const inlineMaxTokens = opts.inlineMaxTokens ?? 0;
      const inline =
        inlineMaxTokens > 0
          ? { session: await InferenceSession.create(graph.path, options), maxTokens: inlineMaxTokens }
          : null;
      return new OrtBackend(thread, provider, graph.output, ready.inputNames.includes("token_type_ids"), inline);
    } catch (err) {
      await thread.terminate();
      lastError = err as Error;
      onFallback(provider, lastError);
    }
  }
  throw lastError ?? new Error("no execution provider configured");
};

/** The thread's next message (of `kind`, when given); its exit or crash first is an error. */
function firstMessage(thread: Worker, kind?: ThreadMessage["kind"]): Promise<ThreadMessage> {
  return new Promise((resolve, reject) => {
    const onMessage = (msg: ThreadMessage) => {
      if (kind && msg.kind !== kind) return;
      done();
      resolve(msg);
    };
    const onError = (err: Error) => {
      done();
      reject(err);
    };
    const onExit = (code: number) => onError(new Error(`inference thread exited (code ${code})`));
    const done = () => {
      thread.off("message", onMessage);
      thread.off("error", onError);
      thread.off("exit", onExit);
    };
    thread.on("message", onMessage);
    thread.on("error", onError);
    thread.on("exit", onExit);
  });
}
