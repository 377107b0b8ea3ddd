import type { EmbeddingModel } from "@tandem/model-runtime";
import { UnrecoverableError } from "bullmq";
import type { Target } from "./ann-gateway.js";
import { readRange } from "./corpus.js";
import { type JobContext, type JobHandler, newProgress } from "./jobs.js";
import { type WriteCounts, writeDocs } from "./pipeline.js";
import type { ChunkProgress, KindJob } from "./queue.js";
import { readReindexState } from "./reindex.js";
import { type Doc, SubmissionValidator } from "./validate.js";

/** `docs` jobs: the documents travel in the job, validated at the door. */
export function docsJobs(ctx: JobContext): JobHandler<"docs"> {
  return {
    run: (job, shouldRelease) => indexJob(ctx, job, performance.now(), job.data.docs, newProgress(), shouldRelease),
  };
}

/** `file` jobs: the worker reads its range of the file and validates each line itself. */
export function fileJobs(ctx: JobContext): JobHandler<"file"> {
  const { config } = ctx;
  return {
    async run(job, shouldRelease) {
      const started = performance.now();
      const validator = new SubmissionValidator(
        {
          maxTextBytes: config.MAX_TEXT_BYTES,
          maxPayloadBytes: config.MAX_PAYLOAD_BYTES,
          maxIdBytes: config.MAX_ID_BYTES,
        },
        job.data.range.firstLine,
      );
      await readRange(job.data.range, validator);
      const progress = newProgress();
      progress.rejected = validator.rejected;
      progress.failed = validator.rejected.length;
      ctx.metrics.docOutcome("rejected", validator.rejected.length);
      return indexJob(ctx, job, started, validator.accepted, progress, shouldRelease);
    },
  };
}

/** Writes a job's documents into its collection (and a reindex's new generation), reporting progress as groups are acknowledged. */
async function indexJob(
  ctx: JobContext,
  job: KindJob<"docs" | "file">,
  /** When the attempt began (reading a file range counts as the job's time). */
  started: number,
  docs: Doc[],
  progress: ChunkProgress,
  shouldRelease: () => boolean,
): Promise<ChunkProgress> {
  const { ann, teachers } = ctx;
  const { collection } = job.data;
  progress.total = docs.length + progress.failed;

  // Resolved per attempt, not at submit time: a job queued before an alias swap writes to the new generation.
  const primary = await ann.resolve(collection);
  if (!primary) throw new UnrecoverableError(`collection "${collection}" not found in the ANN service`);
  const targets: Array<{ target: Target; model: EmbeddingModel; primary: boolean }> = [
    { target: primary, model: await teachers.forTarget(primary, collection), primary: true },
  ];
  // Dual-write while a reindex of this collection runs: the new generation must not miss new submissions.
  const reindex = await readReindexState(ctx.redis, ctx.keys, primary.name);
  if (reindex) {
    const next = await ann.resolve(reindex.target);
    if (next) targets.push({ target: next, model: await teachers.load(reindex.bundleDir, next.space), primary: false });
  }

  await job.updateProgress(progress);
  const report = async (delta: WriteCounts) => {
    progress.done += delta.embedded + delta.payloadOnly;
    progress.skipped += delta.unchanged;
    progress.truncated += delta.truncated;
    progress.tokens += delta.tokens;
    progress.activeS = (performance.now() - started) / 1000;
    await job.updateProgress(progress);
  };
  for (const t of targets) {
    await writeDocs(ctx.pipeline, t.target, t.model, docs, t.primary ? report : async () => {}, shouldRelease);
  }
  progress.activeS = (performance.now() - started) / 1000;
  return progress;
}
