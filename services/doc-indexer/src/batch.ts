/**
 * Inference batches by token budget. A batch is padded to its longest row, so
 * rows of similar length go together: sort by length (longest first), then
 * take rows while rows x longest row stays within the budget and padding
 * within PADDING_SLACK. Longest first puts the expensive batches at the start,
 * where progress estimates matter.
 *
 * Each batch is exactly one graph run (EmbeddingModel.embedBatch never splits
 * it), so this is the one place of the teacher's batch policy, and what the
 * indexer's metrics and bench:indexer record of a batch is what ran. The policy
 * is the indexer's because only it sees a whole job at once: sorting a job's
 * documents together is what keeps padding low.
 */
export interface BatchLimits {
  /** Padded tokens (rows x longest row) per batch. */
  maxBatchTokens: number;
  maxBatchDocs: number;
}

export interface Batch {
  /** Indices into the caller's items, longest first. */
  indices: number[];
  /** Longest row: every row is padded to it. */
  seqLen: number;
  /** Real tokens (sum of row lengths). */
  tokens: number;
}

/**
 * Padded tokens may exceed real tokens by this factor within one batch. On a
 * CPU the graph is compute-bound, so a padded token costs as much as a real one
 * and one ragged batch of long documents is slower than a few tight ones.
 */
const PADDING_SLACK = 1.25;

export function formBatches(lengths: readonly number[], limits: BatchLimits): Batch[] {
  const order = lengths.map((_, i) => i).sort((a, b) => (lengths[b] as number) - (lengths[a] as number) || a - b);
  const batches: Batch[] = [];
  let current: Batch | null = null;
  for (const i of order) {
    const len = lengths[i] as number;
    // Sorted longest first, so the batch's first row sets its padded length.
    const padded = current ? (current.indices.length + 1) * current.seqLen : 0;
    if (
      current &&
      current.indices.length < limits.maxBatchDocs &&
      padded <= limits.maxBatchTokens &&
      padded <= PADDING_SLACK * (current.tokens + len)
    ) {
      current.indices.push(i);
      current.tokens += len;
      continue;
    }
    // A row longer than the whole budget still runs, alone: the budget bounds batching, not documents.
    current = { indices: [i], seqLen: len, tokens: len };
    batches.push(current);
  }
  return batches;
}

/** Share of padded positions that are padding (0 = none wasted). */
export function paddingWaste(batches: readonly Batch[]): number {
  let padded = 0;
  let real = 0;
  for (const b of batches) {
    padded += b.indices.length * b.seqLen;
    real += b.tokens;
  }
  return padded === 0 ? 0 : 1 - real / padded;
}
