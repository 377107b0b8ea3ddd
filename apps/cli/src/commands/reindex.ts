import { JobState, type JobStatusResponse } from "@tandem/proto";
import { address } from "../addresses.js";
import { describeError, indexerClient } from "../clients.js";
import { followJob, jobLine } from "../jobs.js";
import { bundlePath, userPath } from "../paths.js";

export interface ReindexFlags {
  /** The new teacher: a bundle name under .cache/models, or a path; read by the indexer's workers. */
  teacher: string;
  /** Parity queries (JSONL of {"text"}), read by the indexer's workers; default: sampled documents. */
  queries?: string;
  wait: boolean;
  json?: boolean;
  indexer?: string;
  /** Seconds a follow retries an unavailable indexer or Redis (--retry-for). */
  retryFor: number;
}

/**
 * Indexer.Reindex: the alias moves to a new generation written by another teacher, once the
 * backfill is done and parity passes. Followed like an index job, with the outcome at the end.
 */
export async function reindexCommand(alias: string, flags: ReindexFlags): Promise<number> {
  const addr = address("indexer", flags.indexer);
  const indexer = indexerClient(addr);
  try {
    const res = await indexer.reindex(
      {
        alias,
        teacherBundleDir: bundlePath(flags.teacher),
        parityQueriesPath: flags.queries ? userPath(flags.queries) : "",
      },
      // No deadline: admission reads and hashes the new bundle (hundreds of MB for a teacher) before it answers.
      { deadlineMs: null },
    );
    if (!flags.json) process.stderr.write(`job ${res.jobId}: reindex of alias ${alias} queued\n`);
    if (!flags.wait) {
      if (flags.json) process.stdout.write(`${JSON.stringify(res)}\n`);
      return 0;
    }
    const final = await followJob(indexer, res.jobId, {
      bar: !flags.json,
      label: "reindexing",
      retryForMs: flags.retryFor * 1000,
    });
    process.stdout.write(flags.json ? `${JSON.stringify(final)}\n` : `${jobLine(final)}\n${outcome(final)}`);
    return final.state === JobState.JOB_STATE_COMPLETED ? 0 : 1;
  } catch (err) {
    process.stderr.write(`tandem reindex: ${describeError(err, addr)}\n`);
    return 1;
  } finally {
    indexer.close();
  }
}

/** Where the alias points now, and why, for a reindex that ran to its end. */
function outcome(s: JobStatusResponse): string {
  const r = s.reindex;
  if (!r) return "";
  const recall = `parity recall@10 ${r.parityRecallAt10.toFixed(3)}`;
  return r.swapped
    ? `alias ${r.alias} now points at ${r.newCollection} (${r.newSpace}), ${recall}; ${r.oldCollection} is kept\n`
    : `alias ${r.alias} still points at ${r.oldCollection}: ${recall} is below the indexer's REINDEX_MIN_RECALL; ` +
        `${r.newCollection} (${r.newSpace}) is kept for inspection\n`;
}
