import type { Tokenized } from "@tandem/model-runtime";
import { CancelledError, DeadlineExceededError, type Meter, ResourceExhaustedError } from "@tandem/service-kit";

export interface BatcherLimits {
  /** Padded tokens (rows x longest row) one graph run may take. */
  maxBatchTokens: number;
  maxBatchRequests: number;
  maxQueuedRequests: number;
}

/** One graph run of exactly `items`, one vector per item in order. */
export type RunBatch = (items: Tokenized[]) => Promise<Float32Array[]>;

interface Entry {
  items: Tokenized[];
  longest: number;
  /** Real tokens of its rows. */
  tokens: number;
  deadline: number;
  signal: AbortSignal;
  enqueuedAt: number;
  resolve(vectors: Float32Array[]): void;
  reject(err: Error): void;
}

/**
 * Continuous micro-batching in the manner of text-embeddings-inference's
 * queue: whenever the runtime is free the next batch is formed from whatever
 * is waiting, up to a padded-token budget and a request cap. A lone request
 * runs at once; requests arriving during a run are merged into the next one.
 * Entries whose caller cancelled or whose deadline passed are dropped before
 * they cost an inference.
 *
 * This is the one owner of the encoder's batches: `run` is one graph run of
 * exactly the batch formed here (EmbeddingModel.embedBatch), so the batch
 * metrics describe what the model ran. Unlike the indexer's long documents,
 * queries are not split by padding: they are short, the budget already counts
 * padded tokens, and each extra graph run adds a fixed cost (the hop to the
 * inference thread). encoder_batch_padding_ratio measures the padding this
 * leaves, the figure to revisit that choice with.
 */
export class Batcher {
  private readonly queue: Entry[] = [];
  private running = false;
  private drained: (() => void) | null = null;
  private readonly batchRequests;
  private readonly batchTexts;
  private readonly batchTokens;
  private readonly batchPadding;
  private readonly queueWait;
  private readonly dropped;

  constructor(
    private readonly run: RunBatch,
    private readonly limits: BatcherLimits,
    meter: Meter,
  ) {
    this.batchRequests = meter.createHistogram("encoder_batch_requests", { description: "requests per batch" });
    this.batchTexts = meter.createHistogram("encoder_batch_texts", { description: "texts per batch" });
    this.batchTokens = meter.createHistogram("encoder_batch_padded_tokens", {
      description: "padded tokens (rows x longest row) of one batch, as the model ran it",
    });
    this.batchPadding = meter.createHistogram("encoder_batch_padding_ratio", {
      description: "share of a batch's positions that are padding, as the model ran it",
    });
    this.queueWait = meter.createHistogram("encoder_queue_wait", {
      unit: "ms",
      description: "time from enqueue to batch",
    });
    this.dropped = meter.createCounter("encoder_dropped_requests", {
      description: "requests dropped before inference (cancelled or past deadline)",
    });
    meter
      .createObservableGauge("encoder_queue_depth", { description: "requests waiting for inference" })
      .addCallback((r) => r.observe(this.queue.length));
  }

  get queued(): number {
    return this.queue.length;
  }

  submit(items: Tokenized[], signal: AbortSignal, deadline: number): Promise<Float32Array[]> {
    if (this.queue.length >= this.limits.maxQueuedRequests) {
      return Promise.reject(
        new ResourceExhaustedError(
          `encoder queue is full (${this.queue.length} requests waiting, MAX_QUEUED_REQUESTS=${this.limits.maxQueuedRequests}); retry with backoff`,
        ),
      );
    }
    return new Promise<Float32Array[]>((resolve, reject) => {
      // Free the queue slot as soon as the caller goes away, not only when its turn comes; the
      // listener goes with the answer, so a served request never builds a cancellation.
      const onAbort = () => this.drop(entry, new CancelledError("request cancelled"));
      const entry: Entry = {
        items,
        longest: items.reduce((m, it) => Math.max(m, it.ids.length), 0),
        tokens: items.reduce((n, it) => n + it.ids.length, 0),
        deadline,
        signal,
        enqueuedAt: performance.now(),
        resolve: (vectors) => {
          signal.removeEventListener("abort", onAbort);
          resolve(vectors);
        },
        reject: (err) => {
          signal.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.queue.push(entry);
      this.pump();
    });
  }

  /** Resolves once nothing is queued or running (graceful shutdown). */
  idle(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.drained = resolve;
    });
  }

  private drop(entry: Entry, err: Error): void {
    const i = this.queue.indexOf(entry);
    if (i < 0) return;
    this.queue.splice(i, 1);
    this.dropped.add(1, { reason: err instanceof CancelledError ? "cancelled" : "deadline" });
    entry.reject(err);
  }

  private nextBatch(): Entry[] {
    const batch: Entry[] = [];
    let rows = 0;
    let longest = 0;
    let real = 0;
    const now = Date.now();
    while (this.queue.length > 0 && batch.length < this.limits.maxBatchRequests) {
      const entry = this.queue[0] as Entry;
      if (entry.signal.aborted) {
        this.drop(entry, new CancelledError("request cancelled"));
        continue;
      }
      if (entry.deadline <= now) {
        this.drop(entry, new DeadlineExceededError("deadline passed while the request waited for inference"));
        continue;
      }
      const newRows = rows + entry.items.length;
      const newLongest = Math.max(longest, entry.longest);
      // The first entry always goes, so an entry larger than the budget cannot starve.
      if (batch.length > 0 && newRows * newLongest > this.limits.maxBatchTokens) break;
      this.queue.shift();
      batch.push(entry);
      rows = newRows;
      longest = newLongest;
      real += entry.tokens;
    }
    if (batch.length > 0) {
      this.batchRequests.record(batch.length);
      this.batchTexts.record(rows);
      this.batchTokens.record(rows * longest);
      this.batchPadding.record(rows * longest === 0 ? 0 : 1 - real / (rows * longest));
      const t = performance.now();
      for (const e of batch) this.queueWait.record(t - e.enqueuedAt);
    }
    return batch;
  }

  private pump(): void {
    if (this.running) return;
    const batch = this.nextBatch();
    if (batch.length === 0) {
      this.drained?.();
      this.drained = null;
      return;
    }
    this.running = true;
    const items = batch.flatMap((e) => e.items);
    this.run(items)
      .then(
        (vectors) => {
          let offset = 0;
          for (const e of batch) {
            e.resolve(vectors.slice(offset, offset + e.items.length));
            offset += e.items.length;
          }
        },
        (err: unknown) => {
          for (const e of batch) e.reject(err instanceof Error ? err : new Error(String(err)));
        },
      )
      .finally(() => {
        this.running = false;
        // Inference runs on the model's own thread, so the requests and cancellations
        // that arrived during the run are already in the queue: the next batch forms now.
        this.pump();
      });
  }
}
