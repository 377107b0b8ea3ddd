import type { EmbeddingModel } from "@tandem/model-runtime";
import { describeBundle, type ResolvedBundle, resolveBundle } from "@tandem/model-runtime";
import type { IndexerService, ModelCard } from "@tandem/proto";
import { type Handlers, InvalidArgumentError, ResourceExhaustedError } from "@tandem/service-kit";
import type { Redis } from "ioredis";
import { type IndexerConfig, teacherDims } from "./config.js";
import type { JobStatusView } from "./job-status.js";
import type { Producer } from "./producer.js";
import type { IndexQueue, Keys } from "./queue.js";
import { admitReindex, type ReindexDoor } from "./reindex.js";
import { modelCard } from "./teacher.js";
import { SubmissionValidator } from "./validate.js";

export interface ServerDeps {
  config: IndexerConfig;
  producer: Producer;
  jobs: JobStatusView;
  reindex: ReindexDoor;
  queue: IndexQueue;
  redis: Redis;
  keys: Keys;
  /** The in-process worker's teacher, when there is one (Info reports its real provider). */
  teacher: EmbeddingModel | null;
}

export function indexerHandlers(deps: ServerDeps): Handlers<typeof IndexerService> {
  const { config, producer, jobs, queue } = deps;
  // Resolving a bundle may hash its graph (hundreds of MB for a teacher): once per process.
  let bundle: Promise<ResolvedBundle> | undefined;
  const limits = {
    maxTextBytes: config.MAX_TEXT_BYTES,
    maxPayloadBytes: config.MAX_PAYLOAD_BYTES,
    maxIdBytes: config.MAX_ID_BYTES,
  };

  return {
    async submit(requests) {
      let collection: string | null = null;
      const validator = new SubmissionValidator(limits);
      let bytes = 0;
      for await (const req of requests) {
        if (collection === null) {
          collection = req.collection;
          // At the door, before reading the rest of a possibly large stream.
          await producer.checkCollection(collection);
        } else if (req.collection && req.collection !== collection) {
          throw new InvalidArgumentError(
            `every message of a Submit stream must name the same collection ("${collection}", then "${req.collection}")`,
          );
        }
        for (const d of req.documents) {
          if (validator.count >= config.MAX_DOCS_PER_SUBMISSION) {
            throw new ResourceExhaustedError(
              `submission has more than MAX_DOCS_PER_SUBMISSION=${config.MAX_DOCS_PER_SUBMISSION} documents: split it`,
            );
          }
          bytes += Buffer.byteLength(d.text, "utf8") + Buffer.byteLength(d.payloadJson, "utf8");
          if (bytes > config.MAX_SUBMISSION_BYTES) {
            throw new ResourceExhaustedError(
              `submission is over MAX_SUBMISSION_BYTES=${config.MAX_SUBMISSION_BYTES}: split it`,
            );
          }
          validator.add(d.id, d.text, d.payloadJson);
        }
      }
      if (collection === null) throw new InvalidArgumentError("empty Submit stream: no collection named");
      return producer.submitDocs(collection, validator.accepted, validator.rejected);
    },

    async submitFile(req) {
      return producer.submitFile(req.collection, req.path, req.limit);
    },

    async jobStatus(req) {
      if (!req.jobId) throw new InvalidArgumentError("job_id is required");
      return jobs.status(req.jobId);
    },

    async listJobs(req) {
      return { jobs: await jobs.list(req.limit) };
    },

    async reindex(req) {
      return admitReindex(deps.reindex, req.alias, req.teacherBundleDir, req.parityQueriesPath);
    },

    async pauseQueue() {
      await queue.pause();
      return jobs.queueState();
    },

    async resumeQueue() {
      await queue.resume();
      return jobs.queueState();
    },

    async info() {
      let teacher: ModelCard;
      if (deps.teacher) teacher = modelCard(deps.teacher.info);
      else {
        // API-only process: the manifest says what the teacher is, the workers said where it runs.
        bundle ??= resolveBundle(config.TEACHER_BUNDLE_DIR);
        bundle.catch(() => {
          bundle = undefined; // retried on the next call
        });
        const b = await bundle;
        teacher = modelCard({
          ...describeBundle(b, teacherDims(config) ?? b.manifest.dims),
          executionProvider: (await deps.redis.get(deps.keys.provider())) ?? "",
        });
      }
      return { teacher, queue: await jobs.queueState() };
    },
  };
}
