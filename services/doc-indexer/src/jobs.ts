import type { Logger } from "@tandem/service-kit";
import type { Redis } from "ioredis";
import type { AnnGateway } from "./ann-gateway.js";
import type { IndexerConfig } from "./config.js";
import type { ContentIndex } from "./content-hash.js";
import type { IndexerMetrics } from "./metrics.js";
import type { PipelineDeps } from "./pipeline.js";
import type { ChunkProgress, IndexQueue, JobKinds, JobName, Keys, KindJob } from "./queue.js";
import type { TeacherRegistry } from "./teacher.js";

/** What every job handler works with: the worker's side of the process, opened once in `startWorker`. */
export interface JobContext {
  config: IndexerConfig;
  ann: AnnGateway;
  content: ContentIndex;
  teachers: TeacherRegistry;
  /** The worker side's Redis client (it waits out an outage, see redis-connection.ts). */
  redis: Redis;
  keys: Keys;
  queue: IndexQueue;
  pipeline: PipelineDeps;
  metrics: IndexerMetrics;
  log: Logger;
}

/**
 * How the worker runs one job kind. BullMQ dispatches by the job's name; the worker's table of
 * these (`JobHandlers`) is where a new kind plugs in.
 */
export interface JobHandler<N extends JobName> {
  /** Runs one attempt; `shouldRelease` turns true when the worker shuts down (checked between flush groups). */
  run(job: KindJob<N>, shouldRelease: () => boolean): Promise<ChunkProgress>;
  /** After the last attempt failed, before the job is dead-lettered: undoes what the kind keeps in flight. */
  gaveUp?(data: JobKinds[N]): Promise<void>;
}

export type JobHandlers = { [N in JobName]: JobHandler<N> };

/**
 * The handler for a job's name, or undefined for a name no handler knows (a job queued by a newer
 * version). The queue pairs each name with its data type (`enqueue`), so the job is of that kind.
 */
export function handlerFor(handlers: JobHandlers, name: string): JobHandler<JobName> | undefined {
  return Object.hasOwn(handlers, name) ? handlers[name as JobName] : undefined;
}

/** A job's progress before it has done anything. */
export function newProgress(total = 0): ChunkProgress {
  return { total, done: 0, skipped: 0, failed: 0, truncated: 0, tokens: 0, activeS: 0, rejected: [] };
}
