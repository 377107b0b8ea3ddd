import { existsSync } from "node:fs";
import { status } from "@grpc/grpc-js";
import { type Indexer, isRpcError } from "@tandem/client";
import { streamCorpusFile } from "@tandem/corpus";
import { JobState, type SubmitResponse } from "@tandem/proto";
import { address } from "../addresses.js";
import { annClient, describeError, ensureCollection, indexerClient } from "../clients.js";
import { indexerSpace } from "../collection-space.js";
import { followJob, jobLine } from "../jobs.js";
import { userPath } from "../paths.js";

export interface IndexFlags {
  collection: string;
  limit: number;
  serverFile?: boolean;
  wait: boolean;
  json?: boolean;
  indexer?: string;
  /** Create the collection, in the indexer's teacher's space, when it does not exist. */
  create?: boolean;
  /** The ANN service --create creates the collection in. */
  ann?: string;
  /** Seconds a follow retries an unavailable indexer or Redis (--retry-for). */
  retryFor: number;
}

/** --create: the collection in the space the indexer's teacher writes, unless it exists in that space already. */
async function createIfMissing(indexer: Indexer, indexerAddr: string, flags: IndexFlags): Promise<void> {
  const annAddr = address("ann", flags.ann);
  const ann = annClient(annAddr);
  try {
    const target = await indexerSpace(indexer, indexerAddr);
    // Described here, against the ANN service's address: the command's own handler names the indexer's.
    const { info, created } = await ensureCollection(ann, flags.collection, target).catch((err: unknown) => {
      throw isRpcError(err) ? new Error(describeError(err, annAddr)) : err;
    });
    if (created && !flags.json) {
      process.stderr.write(`created collection ${info.name}: ${info.space}, ${info.dims}-d (from ${target.from})\n`);
    }
  } finally {
    ann.close();
  }
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
    if (flags.create) await createIfMissing(indexer, addr, flags);
    const res: SubmitResponse = flags.serverFile
      ? await indexer.submitFile(flags.collection, path, flags.limit, { deadlineMs: 60_000 })
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
    if (isRpcError(err, status.NOT_FOUND) && /collection/.test(err.details)) {
      process.stderr.write(
        `create it with --create (in the space of the indexer's teacher), or: tandem collections create ${flags.collection}\n`,
      );
    }
    return 1;
  } finally {
    indexer.close();
  }
}
