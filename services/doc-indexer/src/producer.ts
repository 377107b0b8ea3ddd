import { randomBytes } from "node:crypto";
import { access, constants } from "node:fs/promises";
import { resolve as resolvePath, sep } from "node:path";
import { BundleError, resolveBundle } from "@tandem/model-runtime";
import {
  type DocumentRejection,
  JobState,
  type JobStatusResponse,
  type QueueState,
  type ReindexResult,
  type SubmitResponse,
} from "@tandem/proto";
import {
  FailedPreconditionError,
  InvalidArgumentError,
  type Logger,
  NotFoundError,
  ResourceExhaustedError,
  traceCarrier,
} from "@tandem/service-kit";
import type { Job, Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { AnnGateway, Target } from "./ann-gateway.js";
import type { IndexerConfig } from "./config.js";
import { scanRanges } from "./corpus.js";
import { backlog, type ChunkProgress, type JobData, jobId, type Keys } from "./queue.js";
import { lockReindex, type ReindexState, startDualWrite } from "./reindex.js";
import type { TeacherRegistry } from "./teacher.js";
import type { Doc } from "./validate.js";

/** Rejections kept per submission record (the count is always exact). */
const MAX_STORED_REJECTIONS = 10_000;

/**
 * The producer side: checks at the door, then a submission becomes jobs of
 * at most JOB_MAX_DOCS documents (or file ranges of as many lines), so
 * several workers share a large corpus. A submission id names the group;
 * JobStatus aggregates its jobs.
 */
export class Producer {
  constructor(
    private readonly config: IndexerConfig,
    private readonly queue: Queue<JobData, ChunkProgress>,
    private readonly deadLetters: Queue,
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly ann: AnnGateway,
    private readonly teachers: TeacherRegistry,
    private readonly log: Logger,
  ) {}

  /** NOT_FOUND for an unknown collection, FAILED_PRECONDITION when no teacher writes its space. */
  async checkCollection(collection: string): Promise<Target> {
    if (!collection) throw new InvalidArgumentError("collection is required");
    const target = await this.ann.resolve(collection);
    if (!target) throw new NotFoundError(`collection or alias "${collection}" not found in the ANN service`);
    if (!(await this.teachers.dirFor(target))) {
      throw new FailedPreconditionError(await this.teachers.mismatch(collection, target.space));
    }
    return target;
  }

  private async checkBacklog(adding: number): Promise<void> {
    const queued = await backlog(this.queue);
    if (queued + adding > this.config.MAX_QUEUED_JOBS) {
      throw new ResourceExhaustedError(
        `queue holds ${queued} jobs, adding ${adding} would pass MAX_QUEUED_JOBS=${this.config.MAX_QUEUED_JOBS}: retry later`,
      );
    }
  }

  private newId(): string {
    return `s${Date.now().toString(36)}${randomBytes(5).toString("hex")}`;
  }

  /**
   * Written after the submission's jobs are queued, never before: a Submit cut short by Redis
   * going away then leaves no record whose jobs are missing (JobStatus would count missing jobs
   * as long finished and trimmed, i.e. COMPLETED). Jobs queued without their record still run;
   * resubmitting is safe because content hashes skip what is already indexed.
   */
  private async record(
    id: string,
    kind: string,
    collection: string,
    chunks: number,
    total: number,
    rejected: DocumentRejection[],
  ): Promise<void> {
    const now = Date.now();
    await this.redis
      .multi()
      .hset(this.keys.submission(id), {
        kind,
        collection,
        chunks: String(chunks),
        total: String(total),
        rejectedCount: String(rejected.length),
        rejected: JSON.stringify(rejected.slice(0, MAX_STORED_REJECTIONS)),
        createdAt: String(now),
      })
      .zadd(this.keys.submissions(), now, id)
      .exec();
    // Submission records are bounded like finished jobs: the oldest beyond KEEP_JOBS go.
    const excess = (await this.redis.zcard(this.keys.submissions())) - this.config.KEEP_JOBS;
    if (excess > 0) {
      const old = await this.redis.zpopmin(this.keys.submissions(), excess);
      const ids = old.filter((_, i) => i % 2 === 0);
      if (ids.length > 0) await this.redis.del(...ids.map((o) => this.keys.submission(o)));
    }
  }

  async submitDocs(collection: string, docs: Doc[], rejected: DocumentRejection[]): Promise<SubmitResponse> {
    await this.checkCollection(collection);
    const size = this.config.JOB_MAX_DOCS;
    const chunks = Math.ceil(docs.length / size);
    await this.checkBacklog(chunks);
    const id = this.newId();
    const jobs = [];
    // The Submit call's trace context: each job's processing joins this trace.
    const trace = traceCarrier();
    for (let c = 0; c < chunks; c++) {
      const data: JobData = {
        kind: "docs",
        trace,
        submissionId: id,
        collection,
        offset: c * size,
        docs: docs.slice(c * size, (c + 1) * size),
      };
      jobs.push({ name: "docs", data, opts: { jobId: jobId(id, c) } });
    }
    if (jobs.length > 0) await this.queue.addBulk(jobs);
    await this.record(id, "index", collection, chunks, docs.length + rejected.length, rejected);
    this.log.info(
      { submission: id, collection, accepted: docs.length, rejected: rejected.length, chunks },
      "submitted",
    );
    return { jobId: id, accepted: docs.length, rejected: rejected.slice(0, MAX_STORED_REJECTIONS) };
  }

  async submitFile(collection: string, path: string, limit: number): Promise<SubmitResponse> {
    if (!path) throw new InvalidArgumentError("path is required");
    const abs = resolvePath(path);
    const root = resolvePath(this.config.FILE_ROOT);
    if (abs !== root && !abs.startsWith(root.endsWith(sep) ? root : root + sep)) {
      throw new InvalidArgumentError(`path "${path}" is outside FILE_ROOT "${root}"`);
    }
    try {
      await access(abs, constants.R_OK);
    } catch {
      throw new NotFoundError(`file "${abs}" does not exist or is not readable by the indexer`);
    }
    await this.checkCollection(collection);
    const max = this.config.MAX_DOCS_PER_SUBMISSION;
    if (limit > max) throw new ResourceExhaustedError(`limit ${limit} is over MAX_DOCS_PER_SUBMISSION=${max}`);
    // One line more than allowed tells an over-long file from one exactly at the limit.
    const ranges = await scanRanges(abs, this.config.JOB_MAX_DOCS, limit > 0 ? limit : max + 1);
    const total = ranges.reduce((n, r) => n + r.lines, 0);
    if (total > max) {
      throw new ResourceExhaustedError(`file has more than MAX_DOCS_PER_SUBMISSION=${max} lines: pass a limit`);
    }
    await this.checkBacklog(ranges.length);
    const id = this.newId();
    const trace = traceCarrier();
    await this.queue.addBulk(
      ranges.map((range, c) => ({
        name: "file",
        data: { kind: "file", trace, submissionId: id, collection, offset: range.firstLine, range } satisfies JobData,
        opts: { jobId: jobId(id, c) },
      })),
    );
    await this.record(id, "index", collection, ranges.length, total, []);
    this.log.info({ submission: id, collection, path: abs, docs: total, chunks: ranges.length }, "file submitted");
    return { jobId: id, accepted: total, rejected: [] };
  }

  async reindex(alias: string, bundleDir: string, parityQueriesPath: string): Promise<SubmitResponse> {
    if (!alias) throw new InvalidArgumentError("alias is required");
    if (!bundleDir) throw new InvalidArgumentError("teacher_bundle_dir is required");
    const current = await this.ann.aliasTarget(alias);
    if (!current) throw new NotFoundError(`alias "${alias}" not found: reindex swaps an alias, create one first`);
    const source = await this.ann.resolve(current);
    if (!source) throw new NotFoundError(`alias "${alias}" points at "${current}", which does not exist`);
    if (!(await this.teachers.dirFor(source))) {
      throw new FailedPreconditionError(
        `no teacher is registered for "${current}" (space "${source.space}"): the parity check needs it`,
      );
    }
    if (parityQueriesPath) {
      try {
        await access(parityQueriesPath, constants.R_OK);
      } catch {
        throw new NotFoundError(`parity queries file "${parityQueriesPath}" is not readable by the indexer`);
      }
    }
    let manifest: { space: string; dims: number };
    try {
      const b = await resolveBundle(bundleDir);
      manifest = { space: b.manifest.space, dims: b.manifest.dims };
    } catch (err) {
      if (err instanceof BundleError) throw new InvalidArgumentError(err.message);
      throw err;
    }
    await this.checkBacklog(1);
    const id = this.newId();
    const target = `${alias}-g${Date.now().toString(36)}`;
    const state: ReindexState = {
      alias,
      source: source.name,
      target,
      bundleDir,
      space: manifest.space,
      jobId: jobId(id, 0),
      startedAtMs: Date.now(),
    };
    if (!(await lockReindex(this.redis, this.keys, alias, state.jobId))) {
      const holder = await this.redis.get(this.keys.reindexLock(alias));
      throw new FailedPreconditionError(`a reindex of alias "${alias}" is already running (job ${holder})`);
    }
    try {
      // The new generation exists before dual-write begins, so no index job finds it missing.
      await this.ann.createCollection(target, manifest.space, manifest.dims);
      await this.teachers.register(bundleDir, target);
      await startDualWrite(this.redis, this.keys, state);
    } catch (err) {
      await this.redis.del(this.keys.reindexLock(alias));
      throw err;
    }
    await this.record(id, "reindex", alias, 1, await this.countSource(source), []);
    await this.queue.add(
      "reindex",
      {
        kind: "reindex",
        trace: traceCarrier(),
        submissionId: id,
        alias,
        source: source.name,
        target,
        bundleDir,
        parityQueriesPath,
      },
      { jobId: jobId(id, 0) },
    );
    this.log.info({ submission: id, alias, from: source.name, to: target, space: manifest.space }, "reindex queued");
    return { jobId: id, accepted: 0, rejected: [] };
  }

  private async countSource(source: Target): Promise<number> {
    return this.redis.hlen(this.keys.content(source.name, source.createdAtMs));
  }

  async status(id: string): Promise<JobStatusResponse> {
    const meta = await this.redis.hgetall(this.keys.submission(id));
    if (!meta.kind) throw new NotFoundError(`job "${id}" not found`);
    const chunks = Number(meta.chunks);
    // State first, then the job: a job read before it completed would carry no return value yet.
    const states = await Promise.all(
      Array.from({ length: chunks }, (_, c) => this.queue.getJobState(jobId(id, c)) as Promise<string>),
    );
    const jobs = await Promise.all(
      Array.from(
        { length: chunks },
        (_, c) => this.queue.getJob(jobId(id, c)) as Promise<Job<JobData, ChunkProgress> | undefined>,
      ),
    );
    const rejected = JSON.parse(meta.rejected ?? "[]") as DocumentRejection[];
    const res: JobStatusResponse = {
      jobId: id,
      kind: meta.kind,
      state: JobState.JOB_STATE_WAITING,
      collection: meta.collection ?? "",
      docsTotal: Number(meta.total),
      docsDone: 0,
      docsSkipped: 0,
      docsFailed: Number(meta.rejectedCount ?? rejected.length),
      rejected,
      docsPerS: 0,
      tokensPerS: 0,
      error: "",
      createdAtMs: Number(meta.createdAt),
      finishedAtMs: 0,
      reindex: undefined,
      docsTruncated: 0,
      tokens: 0,
    };
    let firstStart = Number.POSITIVE_INFINITY;
    let lastFinish = 0;
    let failed = 0;
    let completed = 0;
    let active = 0;
    jobs.forEach((job, c) => {
      const state = states[c];
      if (!job || state === "missing" || state === "unknown") {
        completed++; // trimmed by KEEP_JOBS long after it finished
        return;
      }
      const p = (state === "completed" ? job.returnvalue : job.progress) as ChunkProgress | number | undefined;
      if (p && typeof p === "object") {
        res.docsDone += p.done;
        res.docsSkipped += p.skipped;
        res.docsFailed += p.failed;
        res.docsTruncated += p.truncated;
        res.tokens += p.tokens;
        if (res.rejected.length < MAX_STORED_REJECTIONS) res.rejected.push(...p.rejected);
        if (p.reindex) res.reindex = p.reindex satisfies ReindexResult;
      }
      if (job.processedOn) firstStart = Math.min(firstStart, job.processedOn);
      if (job.finishedOn) lastFinish = Math.max(lastFinish, job.finishedOn);
      if (state === "completed") completed++;
      else if (state === "failed") {
        failed++;
        if (!res.error) res.error = job.failedReason;
      } else if (state === "active") active++;
    });
    if (failed > 0) res.state = JobState.JOB_STATE_FAILED;
    else if (completed === chunks) res.state = JobState.JOB_STATE_COMPLETED;
    else if (active > 0) res.state = JobState.JOB_STATE_ACTIVE;
    else if (await this.queue.isPaused()) res.state = JobState.JOB_STATE_PAUSED;
    if (res.state === JobState.JOB_STATE_COMPLETED || res.state === JobState.JOB_STATE_FAILED) {
      res.finishedAtMs = lastFinish || res.createdAtMs;
    }
    // Throughput over the submission's wall time on the workers (several chunks may run at once).
    const end = res.finishedAtMs || Date.now();
    const wallS = Number.isFinite(firstStart) ? (end - firstStart) / 1000 : 0;
    if (wallS > 0) {
      res.docsPerS = res.docsDone / wallS;
      res.tokensPerS = res.tokens / wallS;
    }
    return res;
  }

  async list(limit: number): Promise<JobStatusResponse[]> {
    const ids = await this.redis.zrevrange(this.keys.submissions(), 0, Math.max(1, Math.min(limit || 50, 1000)) - 1);
    const out: JobStatusResponse[] = [];
    for (const id of ids) {
      try {
        out.push(await this.status(id));
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
      }
    }
    return out;
  }

  async queueState(): Promise<QueueState> {
    const c = await this.queue.getJobCounts("waiting", "delayed", "prioritized", "active", "failed");
    const dead = await this.deadLetters.getJobCounts("waiting");
    return {
      paused: await this.queue.isPaused(),
      waiting: (c.waiting ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0),
      active: c.active ?? 0,
      failed: c.failed ?? 0,
      deadLettered: dead.waiting ?? 0,
    };
  }

  async pause(): Promise<QueueState> {
    await this.queue.pause();
    return this.queueState();
  }

  async resume(): Promise<QueueState> {
    await this.queue.resume();
    return this.queueState();
  }
}
