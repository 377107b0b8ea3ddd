import { status } from "@grpc/grpc-js";
import { isRpcError } from "@tandem/client";
import type { EmbeddingModel } from "@tandem/model-runtime";
import { createLogger, FailedPreconditionError, type Logger, type Meter, withTraceCarrier } from "@tandem/service-kit";
import { UnrecoverableError, WaitingError, Worker } from "bullmq";
import { AnnGateway } from "./ann-gateway.js";
import { type IndexerConfig, teacherDims } from "./config.js";
import { ContentIndex } from "./content-hash.js";
import { docsJobs, fileJobs } from "./index-jobs.js";
import { handlerFor, type JobContext, type JobHandlers } from "./jobs.js";
import { IndexerMetrics } from "./metrics.js";
import { ReleaseRequested } from "./pipeline.js";
import {
  type ChunkProgress,
  type JobData,
  type JobName,
  Keys,
  openSideStore,
  QUEUE_NAME,
  queueOptions,
} from "./queue.js";
import { ConnectionWatch, storeName } from "./redis-connection.js";
import { reindexJobs } from "./reindex.js";
import { isStoreUnavailable } from "./store-errors.js";
import { checkTeacher, TeacherRegistry } from "./teacher.js";

export interface RunningWorker {
  /** The configured teacher, loaded at start (its provider is the one reported). */
  teacher: EmbeddingModel;
  worker: Worker<JobData, ChunkProgress, JobName>;
  metrics: IndexerMetrics;
  /** Stops taking jobs; the current job finishes, or is released back to the queue past the grace period. */
  stop(): Promise<void>;
}

export interface WorkerDeps {
  log?: Logger;
  meter: Meter;
  /**
   * What the API's process already holds when the worker runs in it (one of each per process):
   * its instruments, its ANN gateway and the watch that logs each Redis outage once. The API
   * closes what it passes.
   */
  shared?: { metrics: IndexerMetrics; ann: AnnGateway; watch: ConnectionWatch };
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
  // In the API's process the API checked it already, before opening anything.
  if (!deps.shared) await checkTeacher(config.TEACHER_BUNDLE_DIR, teacherDims(config));
  const keys = new Keys(config.QUEUE_PREFIX);
  const watch = deps.shared?.watch ?? new ConnectionWatch(storeName(config), log);
  // The worker's side of Redis waits out an outage (redis-connection.ts); the API's fails fast.
  const store = await openSideStore(config, "worker", watch);
  const { redis, queue, deadLetters } = store;
  const ann = deps.shared?.ann ?? AnnGateway.fromConfig(config);
  const content = new ContentIndex(redis, keys);
  const { teachers, registered } = await TeacherRegistry.configured(redis, keys, config, log);
  const teacher = await teachers.load(config.TEACHER_BUNDLE_DIR, registered.space);
  await redis.set(keys.provider(), teacher.info.executionProvider);
  const metrics = deps.shared?.metrics ?? new IndexerMetrics(deps.meter);
  const ctx: JobContext = {
    config,
    ann,
    content,
    teachers,
    redis,
    keys,
    queue,
    metrics,
    log,
    pipeline: {
      ann,
      content,
      metrics,
      opts: {
        maxBatchTokens: config.MAX_BATCH_TOKENS,
        maxBatchDocs: config.MAX_BATCH_DOCS,
        flushDocs: config.UPSERT_FLUSH_DOCS,
        pointsPerMessage: config.UPSERT_MESSAGE_POINTS,
      },
    },
  };
  // Every job kind the worker runs, by job name.
  const handlers: JobHandlers = { docs: docsJobs(ctx), file: fileJobs(ctx), reindex: reindexJobs(ctx) };

  let releaseAfter = Number.POSITIVE_INFINITY;

  const worker = new Worker<JobData, ChunkProgress, JobName>(
    QUEUE_NAME,
    // Each job runs in a span whose parent is the request that queued it (Submit, SubmitFile,
    // Reindex): its ANN calls join that trace across the queue.
    (job, token, signal) =>
      withTraceCarrier(job.data.trace, "doc-index job", { "job.id": job.id ?? "", "job.kind": job.name }, async () => {
        const handler = handlerFor(handlers, job.name);
        if (!handler) throw new UnrecoverableError(`no handler for job kind "${job.name}"`);
        try {
          return await handler.run(job, () => Date.now() >= releaseAfter || signal?.aborted === true);
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
      }),
    {
      ...queueOptions(config, redis),
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
    handlerFor(handlers, job.name)
      ?.gaveUp?.(job.data)
      .catch((e: unknown) => log.error({ jobId: job.id, err: e }, "could not undo what the job left in flight"));
    deadLetters
      .add(
        "dead",
        { jobId: job.id, data: job.data, failedReason: err.message, attemptsMade: job.attemptsMade },
        { jobId: job.id, removeOnComplete: false, removeOnFail: false },
      )
      .catch((e: unknown) => log.error({ jobId: job.id, err: e }, "could not dead-letter job"));
  });
  worker.on("stalled", (jobId) => log.warn({ jobId }, "job stalled (its worker died): back in the queue"));
  worker.on("error", (err) => (isStoreUnavailable(err) ? watch.down(err) : log.error({ err }, "worker error")));
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
      await teachers.release();
      await store.close();
      if (!deps.shared) ann.close();
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
