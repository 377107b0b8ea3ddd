import type { EmbeddingModel, Tokenized } from "@tandem/model-runtime";
import { encodeVector, type Point } from "@tandem/proto";
import type { AnnGateway, Target } from "./ann-gateway.js";
import { type Batch, formBatches } from "./batch.js";
import type { ContentIndex } from "./content-hash.js";
import type { IndexerMetrics } from "./metrics.js";
import { type Doc, storedPayload } from "./validate.js";

/**
 * The per-job pipeline for one collection generation:
 * classify (content hash) -> tokenize -> batch by token budget and padding -> embed ->
 * stream to the ANN service -> acknowledged -> record content hashes.
 *
 * Documents go through in flush groups: each group is one Upsert stream, and
 * a group's hashes and progress are committed only when the ANN service has
 * acknowledged every vector in it. While one group waits for its
 * acknowledgement the teacher already embeds the next, so the GPU/CPU does not
 * idle on the write path.
 */
export interface PipelineOptions {
  maxBatchTokens: number;
  maxBatchDocs: number;
  flushDocs: number;
  pointsPerMessage: number;
}

export interface WriteCounts {
  /** Embedded and acknowledged. */
  embedded: number;
  /** Text unchanged, payload re-written with the stored vector. */
  payloadOnly: number;
  /** Stored exactly as submitted: nothing done. */
  unchanged: number;
  truncated: number;
  tokens: number;
}

export const emptyCounts = (): WriteCounts => ({ embedded: 0, payloadOnly: 0, unchanged: 0, truncated: 0, tokens: 0 });

/** Thrown between flush groups when the worker is shutting down: the job is released, not failed. */
export class ReleaseRequested extends Error {
  constructor() {
    super("worker shutting down: job released back to the queue");
    this.name = "ReleaseRequested";
  }
}

export interface PipelineDeps {
  ann: AnnGateway;
  content: ContentIndex;
  metrics: IndexerMetrics;
  opts: PipelineOptions;
}

export async function writeDocs(
  deps: PipelineDeps,
  target: Target,
  model: EmbeddingModel,
  docs: readonly Doc[],
  /** Called after each acknowledged group with what it added. */
  onCommit: (delta: WriteCounts) => Promise<void>,
  /** Checked between groups; true releases the job (what was acknowledged stays). */
  shouldRelease: () => boolean,
): Promise<WriteCounts> {
  const { ann, content, metrics, opts } = deps;
  const sha = model.info.bundleSha256;
  if (model.info.space !== target.space) {
    throw new Error(`teacher space "${model.info.space}" != collection "${target.name}" space "${target.space}"`);
  }
  const total = emptyCounts();
  const classes = await content.classify(target, docs, sha);
  if (classes.unchanged.length > 0) {
    total.unchanged += classes.unchanged.length;
    metrics.docOutcome("skipped", classes.unchanged.length);
    await onCommit({ ...emptyCounts(), unchanged: classes.unchanged.length });
  }

  // Payload-only changes: the stored vector is still right, fetch and re-write it.
  const toEmbed = classes.embed.map((i) => docs[i] as Doc);
  if (classes.payloadOnly.length > 0) {
    const group = classes.payloadOnly.map((i) => docs[i] as Doc);
    const got = await ann.get(
      target.name,
      group.map((d) => d.id),
      true,
    );
    const vectors = new Map(got.points.map((p) => [p.id, p.vector]));
    const rewrite: Doc[] = [];
    const points: Point[] = [];
    for (const d of group) {
      const v = vectors.get(d.id);
      if (v && v.length === target.dims) {
        rewrite.push(d);
        points.push({ id: d.id, vector: encodeVector(v), payloadJson: storedPayload(d) });
      } else toEmbed.push(d); // the vector is gone from the ANN service: embed again
    }
    if (points.length > 0) {
      const stream = ann.open(target.name, opts.pointsPerMessage);
      await stream.write(points);
      await stream.end();
      await content.commit(target, rewrite, sha);
      total.payloadOnly += rewrite.length;
      metrics.docOutcome("payload_only", rewrite.length);
      await onCommit({ ...emptyCounts(), payloadOnly: rewrite.length });
    }
  }

  // Batches are formed over the whole job (sorting more documents by length wastes less padding),
  // then consecutive batches make up a flush group of about `flushDocs` documents.
  const tokenized = await tokenizeAll(model, toEmbed);
  const groups: Batch[][] = [];
  let groupDocs = Number.POSITIVE_INFINITY;
  for (const batch of formBatches(
    tokenized.map((t) => t.ids.length),
    opts,
  )) {
    if (groupDocs >= opts.flushDocs) {
      groups.push([]);
      groupDocs = 0;
    }
    (groups[groups.length - 1] as Batch[]).push(batch);
    groupDocs += batch.indices.length;
  }

  // Embedding, a flush group at a time, with one group's acknowledgement in flight.
  let inflight: Promise<void> = Promise.resolve();
  for (const batches of groups) {
    if (shouldRelease()) {
      await inflight;
      throw new ReleaseRequested();
    }
    const group: Doc[] = [];
    const delta = emptyCounts();
    const stream = ann.open(target.name, opts.pointsPerMessage);
    try {
      for (const batch of batches) {
        // One batch, one graph run: the metrics describe what ran.
        const vectors = await model.embedBatch(batch.indices.map((i) => tokenized[i] as Tokenized));
        metrics.batch(batch.indices.length, batch.seqLen, batch.tokens);
        delta.tokens += batch.tokens;
        await stream.write(
          batch.indices.map((i, j) => {
            const d = toEmbed[i] as Doc;
            group.push(d);
            if ((tokenized[i] as Tokenized).truncated) delta.truncated++;
            return { id: d.id, vector: encodeVector(vectors[j] as Float32Array), payloadJson: storedPayload(d) };
          }),
        );
      }
    } catch (err) {
      stream.cancel();
      await inflight.catch(() => {});
      throw err;
    }
    delta.embedded = group.length;
    const ack = stream.end();
    ack.catch(() => {}); // awaited inside `inflight`
    const previous = inflight;
    inflight = (async () => {
      // Commits stay in group order: hashes of group k are written after group k-1's.
      await previous;
      await ack;
      await content.commit(target, group, sha);
      await onCommit(delta);
    })();
    inflight.catch(() => {}); // surfaced by the awaits below, not as an unhandled rejection
    // At most one group waits for its acknowledgement while the next one embeds.
    await previous;
    total.embedded += delta.embedded;
    total.truncated += delta.truncated;
    total.tokens += delta.tokens;
  }
  await inflight;
  return total;
}

/** Tokenizes in slices, yielding between them: lock renewals and the gRPC server keep running. */
async function tokenizeAll(model: EmbeddingModel, docs: readonly Doc[]): Promise<Tokenized[]> {
  const out: Tokenized[] = [];
  for (let i = 0; i < docs.length; i++) {
    out.push(model.tokenize((docs[i] as Doc).text, "document"));
    if (i % 64 === 63) await new Promise((r) => setImmediate(r));
  }
  return out;
}
