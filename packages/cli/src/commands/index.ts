import { existsSync } from "node:fs";
import { streamCorpusFile } from "@tandem/doc-indexer";
import { JobState, type SubmitResponse } from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import { address } from "../addresses.js";
import { describeError, indexerClient } from "../clients.js";
import { followJob, jobLine } from "../jobs.js";
import { userPath } from "../paths.js";

export interface IndexFlags {
  collection: string;
  limit: number;
  serverFile?: boolean;
  wait: boolean;
  json?: boolean;
  indexer?: string;
  /** Seconds a follow retries an unavailable indexer or Redis (--retry-for). */
  retryFor: number;
}

export async function indexCommand(file: string, flags: IndexFlags): Promise<number> {
  const addr = address("indexer", flags.indexer);
  const path = userPath(file);
  if (!flags.serverFile && !existsSync(path)) {
    process.stderr.write(`tandem index: ${path} does not exist\n`);
    return 2;
  }
  const indexer = indexerClient(addr);
  try {
    const res: SubmitResponse = flags.serverFile
      ? await unary(
          indexer.submitFile.bind(indexer),
          { collection: flags.collection, path, limit: flags.limit },
          { timeoutMs: 60_000 },
        )
      : await streamCorpusFile(indexer, flags.collection, path, flags.limit);
    if (!flags.json) {
      for (const r of res.rejected.slice(0, 20)) {
        process.stderr.write(`rejected #${r.index} ${JSON.stringify(r.id)}: ${r.reason}\n`);
      }
      if (res.rejected.length > 20) process.stderr.write(`… and ${res.rejected.length - 20} more rejections\n`);
      process.stderr.write(`job ${res.jobId}: ${res.accepted} documents accepted, ${res.rejected.length} rejected\n`);
    }
    if (!flags.wait) {
      if (flags.json) process.stdout.write(`${JSON.stringify(res)}\n`);
      return 0;
    }
    const final = await followJob(indexer, res.jobId, {
      bar: !flags.json,
      retryForMs: flags.retryFor * 1000,
    });
    process.stdout.write(flags.json ? `${JSON.stringify(final)}\n` : `${jobLine(final)}\n`);
    return final.state === JobState.JOB_STATE_COMPLETED ? 0 : 1;
  } catch (err) {
    process.stderr.write(`tandem index: ${describeError(err, addr)}\n`);
    return 1;
  } finally {
    indexer.close();
  }
}
