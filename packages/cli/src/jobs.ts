import { status } from "@grpc/grpc-js";
import { type IndexerClient, JobState, type JobStatusResponse } from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import { SingleBar } from "cli-progress";
import { isGrpcError } from "./clients.js";

export const stateName = (s: JobState) => (JobState[s] ?? "UNKNOWN").replace("JOB_STATE_", "").toLowerCase();
export const finished = (s: JobStatusResponse) =>
  s.state === JobState.JOB_STATE_COMPLETED || s.state === JobState.JOB_STATE_FAILED;

/**
 * Polls JobStatus until the job completes or fails, drawing a progress bar on
 * stderr when `bar` (a terminal that wants one). Resolves with the final status.
 */
export async function followJob(
  indexer: IndexerClient,
  jobId: string,
  opts: { bar: boolean; intervalMs?: number; signal?: AbortSignal },
): Promise<JobStatusResponse> {
  let progress: SingleBar | null = null;
  let misses = 0;
  try {
    for (;;) {
      let s: JobStatusResponse;
      try {
        s = await unary(indexer.jobStatus.bind(indexer), { jobId }, { timeoutMs: 30_000 });
        misses = 0;
      } catch (err) {
        // The API and a busy teacher worker share one process (and here two
        // cores): a slow answer is not a failed job. Give up only when the
        // indexer stays unreachable for several polls in a row.
        const transient =
          isGrpcError(err) && (err.code === status.DEADLINE_EXCEEDED || err.code === status.UNAVAILABLE);
        if (!transient || ++misses > 5) throw err;
        await new Promise((r) => setTimeout(r, 1000));
        continue;
      }
      const handled = s.docsDone + s.docsSkipped + s.docsFailed;
      if (opts.bar) {
        if (!progress && s.docsTotal > 0) {
          progress = new SingleBar({
            format:
              "  indexing [{bar}] {value}/{total} docs | {percentage}% | {rate} docs/s | skipped {skipped} failed {failed} | {state} | eta {eta_formatted}",
            stream: process.stderr,
            hideCursor: true,
            etaBuffer: 30,
            // Not a terminal (a log, a CI job): a plain line every few seconds instead of redraws.
            noTTYOutput: process.stderr.isTTY !== true,
            notTTYSchedule: 5000,
          });
          progress.start(s.docsTotal, 0, { rate: "0.0", skipped: 0, failed: 0, state: "waiting" });
        }
        progress?.update(Math.min(handled, s.docsTotal), {
          rate: s.docsPerS.toFixed(1),
          skipped: s.docsSkipped,
          failed: s.docsFailed,
          state: stateName(s.state),
        });
      }
      if (finished(s)) return s;
      if (opts.signal?.aborted) throw new Error("interrupted");
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 500));
    }
  } finally {
    progress?.stop();
  }
}

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
