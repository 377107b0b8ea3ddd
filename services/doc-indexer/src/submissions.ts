import { randomBytes } from "node:crypto";
import type { DocumentRejection } from "@tandem/proto";
import type { Redis } from "ioredis";
import type { Keys } from "./queue.js";

/** Rejections kept per submission record (the count is always exact). */
export const MAX_STORED_REJECTIONS = 10_000;

/** What a submission is: the group of jobs one Submit, SubmitFile or Reindex queued, as JobStatus reports it. */
export interface Submission {
  /** "index" or "reindex". */
  kind: string;
  /** The collection or alias it was submitted to. */
  collection: string;
  /** Its jobs, `jobId(id, 0)` to `jobId(id, chunks - 1)`. */
  chunks: number;
  /** Documents, the rejected ones included. */
  total: number;
  rejectedCount: number;
  /** The first MAX_STORED_REJECTIONS rejections. */
  rejected: DocumentRejection[];
  createdAtMs: number;
}

export function newSubmissionId(): string {
  return `s${Date.now().toString(36)}${randomBytes(5).toString("hex")}`;
}

/**
 * Submission records in Redis: a hash each, and a sorted set of ids by creation time for ListJobs,
 * bounded like finished jobs (the oldest beyond KEEP_JOBS go).
 */
export class Submissions {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly keep: number,
  ) {}

  async record(
    id: string,
    s: { kind: string; collection: string; chunks: number; total: number; rejected: DocumentRejection[] },
  ): Promise<void> {
    const now = Date.now();
    await this.redis
      .multi()
      .hset(this.keys.submission(id), {
        kind: s.kind,
        collection: s.collection,
        chunks: String(s.chunks),
        total: String(s.total),
        rejectedCount: String(s.rejected.length),
        rejected: JSON.stringify(s.rejected.slice(0, MAX_STORED_REJECTIONS)),
        createdAt: String(now),
      })
      .zadd(this.keys.submissions(), now, id)
      .exec();
    const excess = (await this.redis.zcard(this.keys.submissions())) - this.keep;
    if (excess > 0) {
      const old = await this.redis.zpopmin(this.keys.submissions(), excess);
      const ids = old.filter((_, i) => i % 2 === 0);
      if (ids.length > 0) await this.redis.del(...ids.map((o) => this.keys.submission(o)));
    }
  }
}

/** A submission from its stored hash (HGETALL); null when there is none. */
export function parseSubmission(h: Record<string, string>): Submission | null {
  if (!h.kind) return null;
  const rejected = JSON.parse(h.rejected ?? "[]") as DocumentRejection[];
  return {
    kind: h.kind,
    collection: h.collection ?? "",
    chunks: Number(h.chunks),
    total: Number(h.total),
    rejectedCount: Number(h.rejectedCount ?? rejected.length),
    rejected,
    createdAtMs: Number(h.createdAt),
  };
}
