import type { Meter } from "@tandem/service-kit";

type Counter = ReturnType<Meter["createCounter"]>;
type Histogram = ReturnType<Meter["createHistogram"]>;

/** Seconds over which the docs/s and tokens/s gauges average. */
const RATE_WINDOW_S = 10;

/**
 * The indexer's instruments. Counters are the truth (Prometheus `rate()` works
 * on them); the two rate gauges exist because "docs/s right now" is what an
 * operator watching a backfill asks for first.
 */
export class IndexerMetrics {
  private readonly docs: Counter;
  private readonly tokens: Counter;
  private readonly batchDocs: Histogram;
  private readonly batchTokens: Histogram;
  private readonly batchPadding: Histogram;
  private readonly jobs: Counter;
  private readonly window: Array<{ t: number; docs: number; tokens: number }> = [];

  constructor(meter: Meter, queueDepth?: () => Promise<Record<string, number>>) {
    this.docs = meter.createCounter("indexer_docs", {
      description: "documents by outcome: embedded | payload_only | skipped (unchanged) | rejected",
    });
    this.tokens = meter.createCounter("indexer_tokens", {
      description: "tokens embedded by the teacher (real tokens, not padding)",
    });
    this.batchDocs = meter.createHistogram("indexer_batch_docs", {
      description: "documents per inference batch",
      advice: { explicitBucketBoundaries: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] },
    });
    this.batchTokens = meter.createHistogram("indexer_batch_tokens", {
      description: "padded tokens (rows x longest row) per inference batch",
      advice: { explicitBucketBoundaries: [128, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536] },
    });
    this.batchPadding = meter.createHistogram("indexer_batch_padding_ratio", {
      description: "share of a batch's positions that are padding",
      advice: { explicitBucketBoundaries: [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5] },
    });
    this.jobs = meter.createCounter("indexer_jobs", {
      description: "jobs by outcome: completed | failed (an attempt) | dead_lettered | released",
    });
    meter
      .createObservableGauge("indexer_docs_per_second", {
        description: `documents embedded per second, over the last ${RATE_WINDOW_S} s`,
      })
      .addCallback((r) => r.observe(this.rate().docsPerS));
    meter
      .createObservableGauge("indexer_tokens_per_second", {
        description: `tokens embedded per second, over the last ${RATE_WINDOW_S} s`,
      })
      .addCallback((r) => r.observe(this.rate().tokensPerS));
    if (queueDepth) {
      meter
        .createObservableGauge("indexer_queue_depth", { description: "jobs in the queue by state" })
        .addCallback(async (r) => {
          const counts = await queueDepth().catch(() => ({}) as Record<string, number>);
          for (const [state, n] of Object.entries(counts)) r.observe(n, { state });
        });
    }
  }

  batch(docs: number, seqLen: number, realTokens: number): void {
    const padded = docs * seqLen;
    this.batchDocs.record(docs);
    this.batchTokens.record(padded);
    this.batchPadding.record(padded === 0 ? 0 : 1 - realTokens / padded);
    this.tokens.add(realTokens);
    this.docs.add(docs, { outcome: "embedded" });
    this.window.push({ t: Date.now(), docs, tokens: realTokens });
    this.trim();
  }

  docOutcome(outcome: "payload_only" | "skipped" | "rejected", n: number): void {
    if (n > 0) this.docs.add(n, { outcome });
  }

  job(outcome: "completed" | "failed" | "dead_lettered" | "released"): void {
    this.jobs.add(1, { outcome });
  }

  rate(): { docsPerS: number; tokensPerS: number } {
    this.trim();
    let docs = 0;
    let tokens = 0;
    for (const e of this.window) {
      docs += e.docs;
      tokens += e.tokens;
    }
    return { docsPerS: docs / RATE_WINDOW_S, tokensPerS: tokens / RATE_WINDOW_S };
  }

  private trim(): void {
    const cutoff = Date.now() - RATE_WINDOW_S * 1000;
    while (this.window.length > 0 && (this.window[0] as { t: number }).t < cutoff) this.window.shift();
  }
}
