import type { DocumentRejection } from "@tandem/proto";
import { type Job, Queue, type QueueOptions } from "bullmq";
import type { Redis } from "ioredis";
import type { IndexerConfig } from "./config.js";
import { type ConnectionWatch, connectRedis, type RedisSide } from "./redis-connection.js";
import type { Doc } from "./validate.js";

/**
 * Every queue name and Redis key of the indexer, defined once. All keys live
 * under QUEUE_PREFIX so one deployment (or one test run) owns a namespace and
 * can be wiped with `dropNamespace`.
 */
export const QUEUE_NAME = "doc-index";
export const DEAD_LETTER_QUEUE_NAME = "doc-index-dead";

export class Keys {
  constructor(readonly prefix: string) {}
  private k(...parts: string[]): string {
    return [this.prefix, "indexer", ...parts].join(":");
  }
  /** Hash: what a submission is (collection, chunk count, rejections) for JobStatus. */
  submission(id: string): string {
    return this.k("submission", id);
  }
  /** Sorted set of submission ids by creation time, for ListJobs. */
  submissions(): string {
    return this.k("submissions");
  }
  /**
   * Hash id -> content fingerprint of what is stored in one collection
   * generation. Keyed by the collection's creation time too, so a collection
   * dropped and re-created under the same name never inherits stale hashes.
   */
  content(collection: string, createdAtMs: number): string {
    return this.k("content", collection, String(createdAtMs));
  }
  /** Hash space -> teacher bundle directory: which teacher writes which embedding space. */
  teachers(): string {
    return this.k("teachers");
  }
  /**
   * Hash collection -> teacher bundle directory, for generations written by a teacher other than
   * their space's default (a reindex into the same space with a new bundle): one generation never
   * mixes two teachers' vectors.
   */
  generationTeachers(): string {
    return this.k("generation-teachers");
  }
  /** String (JSON ReindexState): a reindex in progress whose source is this collection. */
  reindex(sourceCollection: string): string {
    return this.k("reindex", sourceCollection);
  }
  /** String (job id): held while a reindex of this alias runs, so two cannot race. */
  reindexLock(alias: string): string {
    return this.k("reindex-alias", alias);
  }
  /** String: the execution provider the workers last reported, for Info. */
  provider(): string {
    return this.k("provider");
  }
}

/** A file range: `lines` non-empty lines from byte `startByte`, the first being line `firstLine` (0-based). */
export interface FileRange {
  path: string;
  startByte: number;
  endByte: number;
  firstLine: number;
  lines: number;
}

/**
 * W3C trace context of the request that queued a job (`traceCarrier()`): the worker runs the job
 * as a child span of it. Absent in jobs queued before it existed, or without tracing: a new trace.
 */
export interface Traced {
  trace?: Record<string, string>;
}

/** A slice of a Submit stream: the documents themselves, validated at the door. */
export interface DocsJobData extends Traced {
  submissionId: string;
  collection: string;
  offset: number;
  docs: Doc[];
}

/** A range of a file the workers read and validate themselves (SubmitFile). */
export interface FileJobData extends Traced {
  submissionId: string;
  collection: string;
  offset: number;
  range: FileRange;
}

export interface ReindexJobData extends Traced {
  submissionId: string;
  alias: string;
  source: string;
  target: string;
  bundleDir: string;
  parityQueriesPath: string;
}

/**
 * Every job kind, by the BullMQ job name it is queued under, with the data its jobs carry. A new
 * kind is a member here, a handler in the worker's table (`JobHandlers`) and a door that queues its
 * jobs through `Producer.enqueue`, the one place jobs are added (so a name always goes with its data).
 */
export interface JobKinds {
  docs: DocsJobData;
  file: FileJobData;
  reindex: ReindexJobData;
}

export type JobName = keyof JobKinds;
export type JobData = JobKinds[JobName];

/** Progress (while running) and return value (when done) of one job. */
export interface ChunkProgress {
  total: number;
  done: number;
  skipped: number;
  failed: number;
  truncated: number;
  tokens: number;
  /** Seconds spent inside the processor, for docs/s and tokens/s. */
  activeS: number;
  rejected: DocumentRejection[];
  reindex?: ReindexOutcome;
}

export interface ReindexOutcome {
  alias: string;
  oldCollection: string;
  newCollection: string;
  newSpace: string;
  parityRecallAt10: number;
  swapped: boolean;
}

export type IndexQueue = Queue<JobData, ChunkProgress, JobName>;
/** A job of one kind: its name and data as `enqueue` paired them. */
export type KindJob<N extends JobName> = Job<JobKinds[N], ChunkProgress, N>;

export function jobId(submissionId: string, chunk: number): string {
  // BullMQ reserves ":" in custom ids.
  return `${submissionId}-${chunk}`;
}

/** The queue's options on `connection`: a client of one side, shared by everything of that side in the process. */
export function queueOptions(config: IndexerConfig, connection: Redis): QueueOptions {
  return {
    connection,
    prefix: config.QUEUE_PREFIX,
    defaultJobOptions: {
      attempts: config.JOB_ATTEMPTS,
      backoff: { type: "exponential", delay: config.BACKOFF_MS },
      // Finished jobs are the job status: keep a bounded number of them.
      removeOnComplete: { count: config.KEEP_JOBS },
      removeOnFail: { count: config.KEEP_JOBS },
    },
  };
}

/**
 * One side's Redis client (see redis-connection.ts) with the queue and the dead-letter queue on
 * it: a process opens at most one of these per side, and closes each once.
 */
export interface SideStore {
  redis: Redis;
  queue: IndexQueue;
  deadLetters: Queue;
  close(): Promise<void>;
}

export async function openSideStore(
  config: IndexerConfig,
  side: RedisSide,
  watch: ConnectionWatch,
): Promise<SideStore> {
  const redis = await connectRedis(config, side);
  watch.watch(redis);
  const queue: IndexQueue = new Queue(QUEUE_NAME, queueOptions(config, redis));
  const deadLetters = new Queue(DEAD_LETTER_QUEUE_NAME, { connection: redis, prefix: config.QUEUE_PREFIX });
  // One log line per outage, not one per failed reconnect (every client reports each of those).
  queue.on("error", (err) => watch.down(err));
  deadLetters.on("error", (err) => watch.down(err));
  return {
    redis,
    queue,
    deadLetters,
    async close() {
      // The queues ride on `redis` (shared): closing them leaves it open, so it goes last.
      await queue.close();
      await deadLetters.close();
      redis.disconnect();
    },
  };
}

/** Jobs not yet started: what MAX_QUEUED_JOBS bounds. */
export async function backlog(queue: IndexQueue): Promise<number> {
  const c = await queue.getJobCounts("waiting", "delayed", "prioritized");
  return (c.waiting ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0);
}

/** Deletes every key under `prefix:` (tests, and tearing down a deployment namespace). */
export async function dropNamespace(redis: Redis, prefix: string): Promise<number> {
  let cursor = "0";
  let n = 0;
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) n += await redis.del(...keys);
  } while (cursor !== "0");
  return n;
}
