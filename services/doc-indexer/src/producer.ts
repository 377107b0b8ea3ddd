import { access, constants } from "node:fs/promises";
import { resolve as resolvePath, sep } from "node:path";
import type { DocumentRejection, SubmitResponse } from "@tandem/proto";
import {
  FailedPreconditionError,
  InvalidArgumentError,
  type Logger,
  NotFoundError,
  ResourceExhaustedError,
  traceCarrier,
} from "@tandem/service-kit";
import type { AnnGateway, Target } from "./ann-gateway.js";
import type { IndexerConfig } from "./config.js";
import { scanRanges } from "./corpus.js";
import { backlog, type IndexQueue, type JobKinds, type JobName, jobId } from "./queue.js";
import { MAX_STORED_REJECTIONS, newSubmissionId, type Submissions } from "./submissions.js";
import type { TeacherRegistry } from "./teacher.js";
import type { Doc } from "./validate.js";

/**
 * The producer side: checks at the door, then a submission becomes jobs of at most JOB_MAX_DOCS
 * documents (or file ranges of as many lines), so several workers share a large corpus. A
 * submission id names the group; JobStatus adds its jobs up (job-status.ts).
 */
export class Producer {
  constructor(
    private readonly config: IndexerConfig,
    private readonly queue: IndexQueue,
    private readonly submissions: Submissions,
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

  /** RESOURCE_EXHAUSTED when `adding` more jobs would pass MAX_QUEUED_JOBS. */
  async checkBacklog(adding: number): Promise<void> {
    const queued = await backlog(this.queue);
    if (queued + adding > this.config.MAX_QUEUED_JOBS) {
      throw new ResourceExhaustedError(
        `queue holds ${queued} jobs, adding ${adding} would pass MAX_QUEUED_JOBS=${this.config.MAX_QUEUED_JOBS}: retry later`,
      );
    }
  }

  /**
   * Queues submission `id` as jobs of kind `name` (the c-th under `jobId(id, c)`), then writes its
   * record: after the jobs, never before, so a call cut short by Redis going away leaves no record
   * whose jobs are missing (JobStatus would count missing jobs as long finished and trimmed, i.e.
   * COMPLETED). Jobs queued without their record still run; submitting again is safe because
   * content hashes skip what is already indexed.
   */
  async enqueue<N extends JobName>(
    id: string,
    name: N,
    jobs: ReadonlyArray<JobKinds[N]>,
    record: { kind: string; collection: string; total: number; rejected: DocumentRejection[] },
  ): Promise<void> {
    if (jobs.length > 0) {
      await this.queue.addBulk(jobs.map((data, c) => ({ name, data, opts: { jobId: jobId(id, c) } })));
    }
    await this.submissions.record(id, { ...record, chunks: jobs.length });
  }

  async submitDocs(collection: string, docs: Doc[], rejected: DocumentRejection[]): Promise<SubmitResponse> {
    await this.checkCollection(collection);
    const size = this.config.JOB_MAX_DOCS;
    const chunks = Math.ceil(docs.length / size);
    await this.checkBacklog(chunks);
    const id = newSubmissionId();
    // The Submit call's trace context: each job's processing joins this trace.
    const trace = traceCarrier();
    await this.enqueue(
      id,
      "docs",
      Array.from({ length: chunks }, (_, c) => ({
        trace,
        submissionId: id,
        collection,
        offset: c * size,
        docs: docs.slice(c * size, (c + 1) * size),
      })),
      { kind: "index", collection, total: docs.length + rejected.length, rejected },
    );
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
    const id = newSubmissionId();
    const trace = traceCarrier();
    await this.enqueue(
      id,
      "file",
      ranges.map((range) => ({ trace, submissionId: id, collection, offset: range.firstLine, range })),
      { kind: "index", collection, total, rejected: [] },
    );
    this.log.info({ submission: id, collection, path: abs, docs: total, chunks: ranges.length }, "file submitted");
    return { jobId: id, accepted: total, rejected: [] };
  }
}
