import { status } from "@grpc/grpc-js";
import type { Indexer } from "@tandem/client";
import { JobState, type JobStatusResponse } from "@tandem/proto";
import type { RetryNotice } from "@tandem/service-kit";
import { redisAway } from "./clients.js";
import { type Progress, startProgress } from "./progress.js";

export const stateName = (s: JobState) => (JobState[s] ?? "UNKNOWN").replace("JOB_STATE_", "").toLowerCase();

export interface FollowOptions {
  /** Show progress on stderr (a bar on a terminal, plain lines elsewhere); without it, only outages get a line each. */
  bar: boolean;
  /** What the progress says is being done; default "indexing". */
  label?: string;
  /** How long one outage (JobStatus answering UNAVAILABLE, or nothing) is retried before giving up. */
  retryForMs?: number;
  intervalMs?: number;
  signal?: AbortSignal;
  /** Told of every retry, after the bar or the line has been updated. */
  onRetry?: (notice: RetryNotice) => void;
}

/** What an UNAVAILABLE is waiting for: the indexer names its store when that is what is away. */
export function waitingFor(notice: RetryNotice): string {
  return redisAway(notice.error) ? "Redis" : "the indexer";
}

/**
 * Follows the job (Indexer.follow) until it completes or fails, showing progress on stderr when
 * `opts.bar`. An outage of the indexer or of its Redis does not end the follow: each poll is
 * retried with backoff for up to `retryForMs` (the progress says what it waits for), and only an
 * outage longer than that, or another error, is thrown. Resolves with the final status.
 */
export async function followJob(indexer: Indexer, jobId: string, opts: FollowOptions): Promise<JobStatusResponse> {
  let progress: Progress | null = null;
  let last: JobStatusResponse | null = null;
  let outage: RetryNotice | null = null;
  const onRetry = (n: RetryNotice) => {
    const what = `waiting for ${waitingFor(n)} (${Math.round(n.waitedMs / 1000)} of ${Math.round(n.limitMs / 1000)} s)`;
    if (progress && last) progress.update(handled(last), detail(last, what));
    if (!progress?.redraws && !outage) {
      process.stderr.write(`job ${jobId}: ${status[n.error.code]}: ${n.error.details}; ${what}\n`);
    }
    outage ??= n;
    opts.onRetry?.(n);
  };
  const polls = indexer.follow(jobId, {
    retryForMs: opts.retryForMs,
    intervalMs: opts.intervalMs,
    signal: opts.signal,
    onRetry,
  });
  try {
    for await (const s of polls) {
      if (outage && !progress?.redraws) process.stderr.write(`job ${jobId}: ${waitingFor(outage)} answers again\n`);
      outage = null;
      last = s;
      if (opts.bar && !progress && s.docsTotal > 0) {
        progress = startProgress(s.docsTotal, { label: opts.label ?? "indexing", unit: "docs" });
      }
      progress?.update(handled(s), detail(s, stateName(s.state)));
    }
    // The follow ends with the job: the last status is the final one.
    return last as JobStatusResponse;
  } finally {
    progress?.stop();
  }
}

const handled = (s: JobStatusResponse) => s.docsDone + s.docsSkipped + s.docsFailed;
const detail = (s: JobStatusResponse, state: string) =>
  `${s.docsPerS.toFixed(1)} docs/s | skipped ${s.docsSkipped} failed ${s.docsFailed} | ${state}`;

/** One line about a job, for listings and summaries. */
export function jobLine(s: JobStatusResponse): string {
  const when = s.createdAtMs ? new Date(s.createdAtMs).toISOString().replace("T", " ").slice(0, 19) : "";
  const took = s.finishedAtMs && s.createdAtMs ? ` in ${((s.finishedAtMs - s.createdAtMs) / 1000).toFixed(1)} s` : "";
  return (
    `${s.jobId}  ${s.kind.padEnd(7)} ${stateName(s.state).padEnd(9)} ${s.collection}  ` +
    `${s.docsDone}/${s.docsTotal} embedded, ${s.docsSkipped} unchanged, ${s.docsFailed} failed` +
    `${s.docsTruncated ? `, ${s.docsTruncated} truncated` : ""}  ${when}${took}${s.error ? `  error: ${s.error}` : ""}`
  );
}
