import { readFileSync } from "node:fs";
import { access, constants } from "node:fs/promises";
import { BundleError, type EmbeddingModel, resolveBundle } from "@tandem/model-runtime";
import type { SubmitResponse } from "@tandem/proto";
import {
  FailedPreconditionError,
  InvalidArgumentError,
  type Logger,
  NotFoundError,
  traceCarrier,
} from "@tandem/service-kit";
import type { Redis } from "ioredis";
import type { AnnGateway, Target } from "./ann-gateway.js";
import { type JobContext, type JobHandler, newProgress } from "./jobs.js";
import { emptyCounts, type WriteCounts, writeDocs } from "./pipeline.js";
import type { Producer } from "./producer.js";
import { type ChunkProgress, type IndexQueue, jobId, type Keys, type KindJob } from "./queue.js";
import { newSubmissionId } from "./submissions.js";
import type { TeacherRegistry } from "./teacher.js";
import { type Doc, docFromStored } from "./validate.js";

/**
 * Zero-downtime reindex into a new teacher's space:
 *
 *   1. (API) create the new generation collection, record the reindex state:
 *      from now on every index job for the old generation also writes the new one;
 *   2. backfill: every document recorded for the old generation is read back
 *      from its stored payload ("text") and embedded by the new teacher;
 *   3. catch-up passes until the new generation holds every document the old
 *      one holds, with the same text and payload (jobs that started before
 *      the dual-write are waited for);
 *   4. parity: recall@10 of the new generation against the old on a fixed
 *      query set, each side queried with its own teacher, exact search;
 *   5. atomic alias swap (when parity passes), the old generation kept.
 */
export interface ReindexState {
  alias: string;
  source: string;
  target: string;
  bundleDir: string;
  space: string;
  jobId: string;
  startedAtMs: number;
}

/** After the swap, dual-write continues this long for jobs that resolved the old generation just before it. */
const DUAL_WRITE_TAIL_S = 600;
const PAGE = 256;
const MAX_CATCH_UP_PASSES = 5;

export async function readReindexState(redis: Redis, keys: Keys, source: string): Promise<ReindexState | null> {
  const raw = await redis.get(keys.reindex(source));
  return raw ? (JSON.parse(raw) as ReindexState) : null;
}

/**
 * What admitting a reindex takes: the API side of the process (its Redis client fails fast, see
 * redis-connection.ts).
 */
export interface ReindexDoor {
  producer: Producer;
  ann: AnnGateway;
  teachers: TeacherRegistry;
  redis: Redis;
  keys: Keys;
  log: Logger;
}

/**
 * Step 1, at the door: the alias, the teacher of its current generation, the parity file and the
 * new bundle are checked, and the per-alias lock taken (two reindexes of one alias cannot race);
 * the new generation is created and dual-write starts; then the `reindex` job is queued.
 */
export async function admitReindex(
  door: ReindexDoor,
  alias: string,
  bundleDir: string,
  parityQueriesPath: string,
): Promise<SubmitResponse> {
  const { producer, ann, teachers, redis, keys } = door;
  if (!alias) throw new InvalidArgumentError("alias is required");
  if (!bundleDir) throw new InvalidArgumentError("teacher_bundle_dir is required");
  const current = await ann.aliasTarget(alias);
  if (!current) throw new NotFoundError(`alias "${alias}" not found: reindex swaps an alias, create one first`);
  const source = await ann.resolve(current);
  if (!source) throw new NotFoundError(`alias "${alias}" points at "${current}", which does not exist`);
  if (!(await teachers.dirFor(source))) {
    throw new FailedPreconditionError(
      `no teacher is registered for "${current}" (space "${source.space}"): the parity check needs it`,
    );
  }
  if (parityQueriesPath) {
    try {
      await access(parityQueriesPath, constants.R_OK);
    } catch {
      throw new NotFoundError(`parity queries file "${parityQueriesPath}" is not readable by the indexer`);
    }
  }
  let manifest: { space: string; dims: number };
  try {
    const b = await resolveBundle(bundleDir);
    manifest = { space: b.manifest.space, dims: b.manifest.dims };
  } catch (err) {
    if (err instanceof BundleError) throw new InvalidArgumentError(err.message);
    throw err;
  }
  await producer.checkBacklog(1);
  const id = newSubmissionId();
  const target = `${alias}-g${Date.now().toString(36)}`;
  const state: ReindexState = {
    alias,
    source: source.name,
    target,
    bundleDir,
    space: manifest.space,
    jobId: jobId(id, 0),
    startedAtMs: Date.now(),
  };
  if ((await redis.set(keys.reindexLock(alias), state.jobId, "NX")) !== "OK") {
    const holder = await redis.get(keys.reindexLock(alias));
    throw new FailedPreconditionError(`a reindex of alias "${alias}" is already running (job ${holder})`);
  }
  try {
    // The new generation exists before dual-write begins, so no index job finds it missing.
    await ann.createCollection(target, manifest.space, manifest.dims);
    await teachers.register(bundleDir, target);
    // From here on, every index job for the source generation also writes the target.
    await redis.set(keys.reindex(state.source), JSON.stringify(state));
  } catch (err) {
    await redis.del(keys.reindexLock(alias));
    throw err;
  }
  const total = await redis.hlen(keys.content(source.name, source.createdAtMs));
  await producer.enqueue(
    id,
    "reindex",
    [{ trace: traceCarrier(), submissionId: id, alias, source: source.name, target, bundleDir, parityQueriesPath }],
    { kind: "reindex", collection: alias, total, rejected: [] },
  );
  door.log.info({ submission: id, alias, from: source.name, to: target, space: manifest.space }, "reindex queued");
  return { jobId: id, accepted: 0, rejected: [] };
}

/** Ends a reindex: releases the alias lock; dual-write stops now, or after a tail when the alias moved. */
export async function endReindex(redis: Redis, keys: Keys, state: ReindexState, swapped: boolean): Promise<void> {
  if (swapped) await redis.expire(keys.reindex(state.source), DUAL_WRITE_TAIL_S);
  else await redis.del(keys.reindex(state.source));
  await redis.del(keys.reindexLock(state.alias));
}

/** `reindex` jobs: the backfill, catch-up, parity and swap of one reindex admitted by `admitReindex`. */
export function reindexJobs(ctx: JobContext): JobHandler<"reindex"> {
  return {
    run: (job, shouldRelease) => runReindex(ctx, job, shouldRelease),
    async gaveUp(data) {
      // A reindex that gave up stops dual-writing and frees the alias; its new generation stays for inspection.
      const state = await readReindexState(ctx.redis, ctx.keys, data.source);
      if (state) await endReindex(ctx.redis, ctx.keys, state, false);
    },
  };
}

async function runReindex(
  ctx: JobContext,
  job: KindJob<"reindex">,
  shouldRelease: () => boolean,
): Promise<ChunkProgress> {
  const { ann, content, teachers, redis, keys, log } = ctx;
  const data = job.data;
  const started = performance.now();
  const state = await readReindexState(redis, keys, data.source);
  if (!state || state.target !== data.target) {
    throw new FailedPreconditionError(`no reindex of "${data.source}" into "${data.target}" is recorded`);
  }
  const source = await ann.resolve(data.source);
  const target = await ann.resolve(data.target);
  if (!source || !target) {
    throw new FailedPreconditionError(`collection "${source ? data.target : data.source}" no longer exists`);
  }
  const newModel = await teachers.load(data.bundleDir, target.space);
  const oldModel = await teachers.forTarget(source, source.name);
  const progress = newProgress(await content.size(source));
  await job.updateProgress(progress);
  const onCommit = async (d: WriteCounts) => {
    progress.done += d.embedded + d.payloadOnly;
    progress.truncated += d.truncated;
    progress.tokens += d.tokens;
    progress.activeS = (performance.now() - started) / 1000;
    await job.updateProgress(progress);
  };

  // Backfill, then catch-up passes: a pass re-reads the old generation's fingerprints and copies
  // whatever the new generation lacks or holds in another version.
  for (let pass = 0; ; pass++) {
    if (pass === 1) await waitForOlderJobs(ctx.queue, state.startedAtMs, job.id ?? "", log);
    const wrote = await copyPass(ctx, source, target, newModel, pass === 0 ? onCommit : async () => {}, shouldRelease);
    log.info({ jobId: job.id, pass, wrote, source: source.name, target: target.name }, "reindex pass done");
    if (pass >= 1 && wrote.embedded + wrote.payloadOnly === 0) break;
    if (pass >= MAX_CATCH_UP_PASSES) {
      throw new Error(`new generation still behind after ${MAX_CATCH_UP_PASSES} catch-up passes`);
    }
  }
  progress.skipped = Math.max(0, progress.total - progress.done);

  // Every point of the old generation must have come from this indexer, else the backfill cannot know its text.
  const oldCount = await ann.count(source.name);
  const known = await content.size(source);
  if (oldCount > known) {
    throw new FailedPreconditionError(
      `collection "${source.name}" holds ${oldCount} points but the indexer recorded ${known}: points written ` +
        "around the indexer cannot be backfilled",
    );
  }

  const recall = await parity(ctx, data.parityQueriesPath, source, target, oldModel, newModel);
  const minRecall = ctx.config.REINDEX_MIN_RECALL;
  const swapped = recall >= minRecall;
  if (swapped) {
    const previous = await ann.setAlias(data.alias, target.name);
    log.info({ alias: data.alias, previous, now: target.name, recall }, "alias swapped to the new generation");
  } else {
    log.warn({ alias: data.alias, recall, minRecall }, "parity below threshold: alias not swapped");
  }
  await endReindex(redis, keys, state, swapped);
  progress.activeS = (performance.now() - started) / 1000;
  progress.reindex = {
    alias: data.alias,
    oldCollection: source.name,
    newCollection: target.name,
    newSpace: target.space,
    parityRecallAt10: recall,
    swapped,
  };
  return progress;
}

async function copyPass(
  deps: JobContext,
  source: Target,
  target: Target,
  model: EmbeddingModel,
  onCommit: (d: WriteCounts) => Promise<void>,
  shouldRelease: () => boolean,
): Promise<WriteCounts> {
  const total = emptyCounts();
  for await (const ids of deps.content.ids(source, PAGE)) {
    const [oldFp, newFp] = await Promise.all([deps.content.get(source, ids), deps.content.get(target, ids)]);
    const stale = ids.filter((_, i) => {
      const o = oldFp[i];
      const n = newFp[i];
      return o && (!n || n.text !== o.text || n.payload !== o.payload);
    });
    if (stale.length === 0) continue;
    const got = await deps.ann.get(source.name, stale, false);
    const docs: Doc[] = [];
    for (const p of got.points) {
      const d = docFromStored(p.id, p.payloadJson);
      if (d) docs.push(d);
      else deps.log.warn({ id: p.id, collection: source.name }, "stored payload has no text: not backfilled");
    }
    const wrote = await writeDocs(deps.pipeline, target, model, docs, onCommit, shouldRelease);
    total.embedded += wrote.embedded;
    total.payloadOnly += wrote.payloadOnly;
    total.tokens += wrote.tokens;
  }
  return total;
}

/** Jobs that were already running when dual-write began may have written the old generation only. */
async function waitForOlderJobs(queue: IndexQueue, since: number, self: string, log: Logger): Promise<void> {
  for (let i = 0; ; i++) {
    const active = await queue.getActive();
    const older = active.filter((j) => j.id !== self && (j.processedOn ?? 0) < since);
    if (older.length === 0) return;
    if (i === 0) log.info({ jobs: older.map((j) => j.id) }, "reindex waits for jobs that predate dual-write");
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Parity queries: a JSONL file of {"text"} (BEIR queries.jsonl works), or the opening words of stored documents. */
async function parityQueries(deps: JobContext, path: string, source: Target): Promise<string[]> {
  const n = deps.config.PARITY_QUERIES;
  if (path) {
    const out: string[] = [];
    for (const line of readFileSync(path, "utf8").split("\n")) {
      if (out.length >= n) break;
      if (!line.trim()) continue;
      const q = JSON.parse(line) as { text?: unknown };
      if (typeof q.text === "string" && q.text.trim()) out.push(q.text);
    }
    return out;
  }
  const out: string[] = [];
  for await (const ids of deps.content.ids(source, PAGE)) {
    const got = await deps.ann.get(source.name, ids.slice(0, n - out.length), false);
    for (const p of got.points) {
      const d = docFromStored(p.id, p.payloadJson);
      // A whole document would find itself in both generations; its first words make a query-like probe.
      if (d) out.push(d.text.split(/\s+/).slice(0, 12).join(" "));
    }
    if (out.length >= n) break;
  }
  return out;
}

async function parity(
  deps: JobContext,
  path: string,
  source: Target,
  target: Target,
  oldModel: EmbeddingModel,
  newModel: EmbeddingModel,
): Promise<number> {
  const queries = await parityQueries(deps, path, source);
  if (queries.length === 0) return 1;
  const [oldVecs, newVecs] = await Promise.all([oldModel.embed(queries, "query"), newModel.embed(queries, "query")]);
  let sum = 0;
  for (let i = 0; i < queries.length; i++) {
    const [a, b] = await Promise.all([
      deps.ann.exactTopK(source.name, oldVecs[i] as Float32Array, 10),
      deps.ann.exactTopK(target.name, newVecs[i] as Float32Array, 10),
    ]);
    const old = new Set(a.hits.map((h) => h.id));
    if (old.size === 0) continue;
    const overlap = b.hits.filter((h) => old.has(h.id)).length;
    sum += overlap / old.size;
  }
  return sum / queries.length;
}
