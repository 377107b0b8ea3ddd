import { address } from "../addresses.js";
import { describeError, indexerClient } from "../clients.js";
import { followJob, jobLine } from "../jobs.js";

export interface JobsFlags {
  limit: number;
  follow?: boolean;
  json?: boolean;
  indexer?: string;
  /** Seconds a follow retries an unavailable indexer or Redis (--retry-for). */
  retryFor: number;
}

export async function jobsCommand(jobId: string | undefined, flags: JobsFlags): Promise<number> {
  const addr = address("indexer", flags.indexer);
  const indexer = indexerClient(addr);
  try {
    if (jobId) {
      const s = flags.follow
        ? await followJob(indexer, jobId, {
            bar: !flags.json,
            retryForMs: flags.retryFor * 1000,
          })
        : await indexer.jobStatus(jobId);
      process.stdout.write(flags.json ? `${JSON.stringify(s)}\n` : `${jobLine(s)}\n`);
      return 0;
    }
    const jobs = await indexer.listJobs(flags.limit);
    if (flags.json) process.stdout.write(`${JSON.stringify(jobs)}\n`);
    else if (jobs.length === 0) process.stdout.write("no jobs\n");
    else process.stdout.write(`${jobs.map(jobLine).join("\n")}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`tandem jobs: ${describeError(err, addr)}\n`);
    return 1;
  } finally {
    indexer.close();
  }
}
