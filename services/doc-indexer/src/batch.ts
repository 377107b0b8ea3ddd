/**
 * Inference batches by token budget. A batch is padded to its longest row, so
 * rows of similar length go together: sort by length (longest first), then
 * take rows while rows x longest row stays within the budget. Longest first
 * puts the expensive batches at the start, where progress estimates matter.
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

export function formBatches(lengths: readonly number[], limits: BatchLimits): Batch[] {
  const order = lengths.map((_, i) => i).sort((a, b) => (lengths[b] as number) - (lengths[a] as number) || a - b);
  const batches: Batch[] = [];
  let current: Batch | null = null;
  for (const i of order) {
    const len = lengths[i] as number;
    if (
      current &&
      current.indices.length < limits.maxBatchDocs &&
      (current.indices.length + 1) * current.seqLen <= limits.maxBatchTokens
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
