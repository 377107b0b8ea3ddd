import { JobState, type JobStatusResponse, type QueueState, type ReindexResult } from "@tandem/proto";
import { NotFoundError } from "@tandem/service-kit";
import type { Queue } from "bullmq";
import type { ChainableCommander, Redis } from "ioredis";
import { type ChunkProgress, type IndexQueue, jobId, type Keys } from "./queue.js";
import { MAX_STORED_REJECTIONS, parseSubmission, type Submission } from "./submissions.js";

/** The fields of a job's hash a status needs: not its data, which for a `docs` job is its documents. */
const JOB_FIELDS = ["timestamp", "progress", "returnvalue", "processedOn", "finishedOn", "failedReason"] as const;
/** Commands per job in the status read: ZSCORE completed, ZSCORE failed, LPOS active, HMGET. */
const PER_JOB = 4;

type ChunkState = "completed" | "failed" | "active" | "queued";

interface Chunk {
  state: ChunkState;
  /** The return value once completed, the progress before. */
  progress: ChunkProgress | number | null;
  processedOn: number;
  finishedOn: number;
  failedReason: string;
}

/**
 * JobStatus and ListJobs: a submission's jobs added up. Whatever the number of jobs, a status is
 * two round trips to Redis (the submission records, then one MULTI with every job's state and
 * counters and whether the queue is paused), and a listing one more (the ids). The MULTI reads
 * a consistent snapshot: a job is never seen completed without its return value.
 */
export class JobStatusView {
  constructor(
    private readonly redis: Redis,
    private readonly queue: IndexQueue,
    private readonly deadLetters: Queue,
    private readonly keys: Keys,
  ) {}

  async status(id: string): Promise<JobStatusResponse> {
    const [res] = await this.statuses([id]);
    if (!res) throw new NotFoundError(`job "${id}" not found`);
    return res;
  }

  /** The latest `limit` submissions (default 50, at most 1000), newest first; ones trimmed meanwhile left out. */
  async list(limit: number): Promise<JobStatusResponse[]> {
    const n = Math.max(1, Math.min(limit || 50, 1000));
    const ids = await this.redis.zrevrange(this.keys.submissions(), 0, n - 1);
    return (await this.statuses(ids)).filter((s): s is JobStatusResponse => s !== null);
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

  private async statuses(ids: readonly string[]): Promise<Array<JobStatusResponse | null>> {
    if (ids.length === 0) return [];
    const records = await execAll(
      ids.reduce((m, id) => m.hgetall(this.keys.submission(id)), this.redis.multi()),
      (h) => parseSubmission(h as Record<string, string>),
    );
    if (records.every((r) => r === null)) return records.map(() => null);
    const q = this.queue;
    const read = this.redis.multi().hexists(q.toKey("meta"), "paused");
    ids.forEach((id, i) => {
      for (let c = 0; c < (records[i]?.chunks ?? 0); c++) {
        const job = jobId(id, c);
        read
          .zscore(q.toKey("completed"), job)
          .zscore(q.toKey("failed"), job)
          .lpos(q.toKey("active"), job)
          .hmget(q.toKey(job), ...JOB_FIELDS);
      }
    });
    const replies = await execAll(read, (r) => r);
    const paused = replies[0] === 1;
    let at = 1;
    return ids.map((id, i) => {
      const rec = records[i];
      if (!rec) return null;
      const chunks: Array<Chunk | null> = [];
      for (let c = 0; c < rec.chunks; c++, at += PER_JOB) chunks.push(chunkOf(replies.slice(at, at + PER_JOB)));
      return aggregate(id, rec, chunks, paused);
    });
  }
}

/** Runs a MULTI (one round trip) and maps each reply; the first command error is thrown. */
async function execAll<T>(multi: ChainableCommander, map: (reply: unknown) => T): Promise<T[]> {
  const replies = (await multi.exec()) ?? [];
  return replies.map(([err, reply]) => {
    if (err) throw err;
    return map(reply);
  });
}

/** One job from its four replies; null when its hash is gone (trimmed by KEEP_JOBS long after it finished). */
function chunkOf([completed, failed, active, fields]: unknown[]): Chunk | null {
  const [timestamp, progress, returnvalue, processedOn, finishedOn, failedReason] = fields as Array<string | null>;
  if (timestamp === null) return null;
  const state: ChunkState =
    completed !== null ? "completed" : failed !== null ? "failed" : active !== null ? "active" : "queued";
  const raw = state === "completed" ? returnvalue : progress;
  return {
    state,
    progress: raw ? (JSON.parse(raw) as ChunkProgress | number) : null,
    processedOn: Number(processedOn ?? 0),
    finishedOn: Number(finishedOn ?? 0),
    failedReason: failedReason ?? "",
  };
}

function aggregate(id: string, rec: Submission, chunks: Array<Chunk | null>, paused: boolean): JobStatusResponse {
  const res: JobStatusResponse = {
    jobId: id,
    kind: rec.kind,
    state: JobState.JOB_STATE_WAITING,
    collection: rec.collection,
    docsTotal: rec.total,
    docsDone: 0,
    docsSkipped: 0,
    docsFailed: rec.rejectedCount,
    rejected: [...rec.rejected],
    docsPerS: 0,
    tokensPerS: 0,
    error: "",
    createdAtMs: rec.createdAtMs,
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
  for (const job of chunks) {
    if (!job) {
      completed++;
      continue;
    }
    const p = job.progress;
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
    if (job.state === "completed") completed++;
    else if (job.state === "failed") {
      failed++;
      if (!res.error) res.error = job.failedReason;
    } else if (job.state === "active") active++;
  }
  if (failed > 0) res.state = JobState.JOB_STATE_FAILED;
  else if (completed === chunks.length) res.state = JobState.JOB_STATE_COMPLETED;
  else if (active > 0) res.state = JobState.JOB_STATE_ACTIVE;
  else if (paused) res.state = JobState.JOB_STATE_PAUSED;
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
