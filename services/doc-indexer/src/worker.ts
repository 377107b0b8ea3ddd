import { status } from "@grpc/grpc-js";
import { isRpcError } from "@tandem/client";
import type { EmbeddingModel } from "@tandem/model-runtime";
import {
  createLogger,
  FailedPreconditionError,
  type Logger,
  type Meter,
  upstreamSecurity,
  withTraceCarrier,
} from "@tandem/service-kit";
import { UnrecoverableError, WaitingError, Worker } from "bullmq";
import type { Redis } from "ioredis";
import { AnnGateway, type Target } from "./ann-gateway.js";
import { type IndexerConfig, teacherDims } from "./config.js";
import { ContentIndex } from "./content-hash.js";
import { readRange } from "./corpus.js";
import { IndexerMetrics } from "./metrics.js";
import { type PipelineDeps, ReleaseRequested, type WriteCounts, writeDocs } from "./pipeline.js";
import {
  type ChunkProgress,
  type IndexJob,
  type IndexJobData,
  Keys,
  openDeadLetterQueue,
  openQueue,
  QUEUE_NAME,
  queueOptions,
} from "./queue.js";
import { ConnectionWatch, connectRedis, storeName } from "./redis-connection.js";
import { endReindex, type ReindexState, readReindexState, runReindex } from "./reindex.js";
import { isStoreUnavailable } from "./store-errors.js";
import { checkTeacher, TeacherRegistry } from "./teacher.js";
import { type Doc, SubmissionValidator } from "./validate.js";

export interface RunningWorker {
  /** The configured teacher, loaded at start (its provider is the one reported). */
  teacher: EmbeddingModel;
  worker: Worker;
  metrics: IndexerMetrics;
  /** Stops taking jobs; the current job finishes, or is released back to the queue past the grace period. */
  stop(): Promise<void>;
}

export interface WorkerDeps {
  log?: Logger;
  meter: Meter;
  /** Shared with the API when the worker runs in its process (one set of instruments per process). */
  metrics?: IndexerMetrics;
}

/** Errors that no retry can fix: the job fails at once (and goes to the dead-letter queue). */
function permanent(err: unknown): boolean {
  return (
    err instanceof FailedPreconditionError ||
    isRpcError(err, status.NOT_FOUND) ||
    isRpcError(err, status.FAILED_PRECONDITION) ||
    isRpcError(err, status.INVALID_ARGUMENT)
  );
}

export async function startWorker(config: IndexerConfig, deps: WorkerDeps): Promise<RunningWorker> {
  const log = deps.log ?? createLogger("doc-indexer-worker", config.LOG_LEVEL);
  await checkTeacher(config.TEACHER_BUNDLE_DIR, teacherDims(config));
  const keys = new Keys(config.QUEUE_PREFIX);
  const redis: Redis = await connectRedis(config, "worker");
  const connection = new ConnectionWatch(storeName(config), log);
  connection.watch(redis);
  const ann = new AnnGateway(
    config.ANN_ADDR,
    config.ANN_TIMEOUT_MS,
    config.MAX_MESSAGE_BYTES,
    upstreamSecurity(config, "ANN"),
  );
  const content = new ContentIndex(redis, keys);
  const teachers = new TeacherRegistry(
    redis,
    keys,
    { providers: config.PROVIDERS, intraOpThreads: config.INTRA_OP_THREADS },
    log,
  );
  const registered = await teachers.register(config.TEACHER_BUNDLE_DIR, undefined, teacherDims(config));
  const teacher = await teachers.load(config.TEACHER_BUNDLE_DIR, registered.space);
  await redis.set(keys.provider(), teacher.info.executionProvider);
  const metrics = deps.metrics ?? new IndexerMetrics(deps.meter);
  const deadLetters = openDeadLetterQueue(config, "worker");
  const queue = openQueue(config, "worker");
  deadLetters.on("error", (err) => connection.down(err));
  queue.on("error", (err) => connection.down(err));
  const pipeline: PipelineDeps = {
    ann,
    content,
    metrics,
    opts: {
      maxBatchTokens: config.MAX_BATCH_TOKENS,
      maxBatchDocs: config.MAX_BATCH_DOCS,
      flushDocs: config.UPSERT_FLUSH_DOCS,
      pointsPerMessage: config.UPSERT_MESSAGE_POINTS,
    },
  };

  let releaseAfter = Number.POSITIVE_INFINITY;
  const shouldRelease = () => Date.now() >= releaseAfter;

  async function processIndex(job: IndexJob, data: IndexJobData, signal: AbortSignal | undefined) {
    const started = performance.now();
    const progress: ChunkProgress = {
      total: 0,
      done: 0,
      skipped: 0,
      failed: 0,
      truncated: 0,
      tokens: 0,
      activeS: 0,
      rejected: [],
    };
    let docs: Doc[];
    if (data.kind === "docs") {
      docs = data.docs;
    } else {
      const validator = new SubmissionValidator(
        {
          maxTextBytes: config.MAX_TEXT_BYTES,
          maxPayloadBytes: config.MAX_PAYLOAD_BYTES,
          maxIdBytes: config.MAX_ID_BYTES,
        },
        data.range.firstLine,
      );
      await readRange(data.range, validator);
      docs = validator.accepted;
      progress.rejected = validator.rejected;
      progress.failed = validator.rejected.length;
      metrics.docOutcome("rejected", validator.rejected.length);
    }
    progress.total = docs.length + progress.failed;

    // Resolved per attempt, not at submit time: a job queued before an alias swap writes to the new generation.
    const primary = await ann.resolve(data.collection);
    if (!primary) throw new UnrecoverableError(`collection "${data.collection}" not found in the ANN service`);
    const targets: Array<{ target: Target; model: EmbeddingModel; primary: boolean }> = [
      { target: primary, model: await teachers.forTarget(primary, data.collection), primary: true },
    ];
    // Dual-write while a reindex of this collection runs: the new generation must not miss new submissions.
    const reindex: ReindexState | null = await readReindexState(redis, keys, primary.name);
    if (reindex) {
      const next = await ann.resolve(reindex.target);
      if (next)
        targets.push({ target: next, model: await teachers.load(reindex.bundleDir, next.space), primary: false });
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
    const release = () => shouldRelease() || signal?.aborted === true;
    for (const t of targets) {
      await writeDocs(pipeline, t.target, t.model, docs, t.primary ? report : async () => {}, release);
    }
    progress.activeS = (performance.now() - started) / 1000;
    return progress;
  }

  async function processJob(job: IndexJob, token: string | undefined, signal: AbortSignal | undefined) {
    try {
      if (job.data.kind === "reindex") {
        return await runReindex(job, job.data, {
          ann,
          content,
          teachers,
          redis,
          keys,
          queue,
          pipeline,
          log,
          minRecall: config.REINDEX_MIN_RECALL,
          parityQueries: config.PARITY_QUERIES,
          shouldRelease: () => shouldRelease() || signal?.aborted === true,
        });
      }
      return await processIndex(job, job.data, signal);
    } catch (err) {
      if (err instanceof ReleaseRequested) {
        // Back to the queue without spending an attempt: another worker takes it from here
        // (content hashes make it skip what this one already wrote).
        await job.moveToWait(token);
        metrics.job("released");
        log.info({ jobId: job.id }, "job released on shutdown");
        throw new WaitingError();
      }
      if (permanent(err) && !(err instanceof UnrecoverableError)) {
        throw new UnrecoverableError((err as Error).message);
      }
      throw err;
    }
  }

  const worker = new Worker<IndexJob["data"], ChunkProgress>(
    QUEUE_NAME,
    // Each job runs in a span whose parent is the request that queued it (Submit, SubmitFile,
    // Reindex): its ANN calls join that trace across the queue.
    (job, token, signal) =>
      withTraceCarrier(job.data.trace, "doc-index job", { "job.id": job.id ?? "", "job.kind": job.data.kind }, () =>
        processJob(job, token, signal),
      ),
    {
      ...queueOptions(config, "worker"),
      concurrency: config.WORKER_CONCURRENCY,
      lockDuration: config.LOCK_DURATION_MS,
      stalledInterval: config.STALLED_INTERVAL_MS,
      maxStalledCount: config.MAX_STALLED_COUNT,
      ...(config.RATE_LIMIT_JOBS > 0
        ? { limiter: { max: config.RATE_LIMIT_JOBS, duration: config.RATE_LIMIT_WINDOW_MS } }
        : {}),
    },
  );

  worker.on("completed", (job) => {
    metrics.job("completed");
    log.info({ jobId: job.id, result: summary(job.returnvalue) }, "job completed");
  });
  worker.on("failed", (job, err) => {
    metrics.job("failed");
    if (!job) return;
    const attempts = job.opts.attempts ?? 1;
    const final =
      err instanceof UnrecoverableError || err.name === "UnrecoverableError" || job.attemptsMade >= attempts;
    log.warn({ jobId: job.id, attempt: job.attemptsMade, of: attempts, err: err.message, final }, "job attempt failed");
    if (!final) return;
    // Open-source BullMQ has no dead-letter queue: a job that is out of attempts is copied there,
    // data and reason, so an operator can inspect and re-queue it.
    metrics.job("dead_lettered");
    if (job.data.kind === "reindex") {
      // A reindex that gave up stops dual-writing and frees the alias; its new generation stays for inspection.
      const source = job.data.source;
      readReindexState(redis, keys, source)
        .then((state) => (state ? endReindex(redis, keys, state, false) : undefined))
        .catch((e: unknown) => log.error({ jobId: job.id, err: e }, "could not clear reindex state"));
    }
    deadLetters
      .add(
        "dead",
        { jobId: job.id, data: job.data, failedReason: err.message, attemptsMade: job.attemptsMade },
        { jobId: job.id, removeOnComplete: false, removeOnFail: false },
      )
      .catch((e: unknown) => log.error({ jobId: job.id, err: e }, "could not dead-letter job"));
  });
  worker.on("stalled", (jobId) => log.warn({ jobId }, "job stalled (its worker died): back in the queue"));
  worker.on("error", (err) => (isStoreUnavailable(err) ? connection.down(err) : log.error({ err }, "worker error")));
  await worker.waitUntilReady();
  log.info(
    {
      queue: `${config.QUEUE_PREFIX}:${QUEUE_NAME}`,
      concurrency: config.WORKER_CONCURRENCY,
      teacher: teacher.info.bundleName,
      space: teacher.info.space,
      provider: teacher.info.executionProvider,
    },
    "worker started",
  );

  return {
    teacher,
    worker,
    metrics,
    async stop() {
      releaseAfter = Date.now() + config.SHUTDOWN_GRACE_MS;
      await worker.close();
      await deadLetters.close();
      await queue.close();
      await teachers.release();
      ann.close();
      redis.disconnect();
    },
  };
}

function summary(p: ChunkProgress | undefined) {
  if (!p) return undefined;
  return {
    total: p.total,
    done: p.done,
    skipped: p.skipped,
    failed: p.failed,
    truncated: p.truncated,
    docsPerS: p.activeS > 0 ? Math.round((p.done / p.activeS) * 10) / 10 : 0,
  };
}
