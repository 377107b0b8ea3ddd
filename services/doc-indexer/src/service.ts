import { IndexerService } from "@tandem/proto";
import {
  bind,
  createLogger,
  type Logger,
  type Meter,
  serverSecurity,
  startMetrics,
  startServer,
} from "@tandem/service-kit";
import { AnnGateway } from "./ann-gateway.js";
import { type IndexerConfig, teacherDims } from "./config.js";
import { indexerHandlers } from "./handlers.js";
import { JobStatusView } from "./job-status.js";
import { IndexerMetrics } from "./metrics.js";
import { Producer } from "./producer.js";
import { Keys, openSideStore } from "./queue.js";
import { ConnectionWatch, storeName } from "./redis-connection.js";
import { checkStore } from "./store-checks.js";
import { withStoreErrors } from "./store-errors.js";
import { Submissions } from "./submissions.js";
import { checkTeacher, TeacherRegistry } from "./teacher.js";
import { type RunningWorker, startWorker } from "./worker.js";

export interface RunningIndexer {
  port: number;
  log: Logger;
  /** The in-process worker (RUN_WORKER=true), or null. */
  worker: RunningWorker | null;
  stop(): Promise<void>;
}

/**
 * The producer API (gRPC Indexer) and, unless RUN_WORKER=false, one queue
 * worker in the same process. Workers scale out as separate processes
 * (`worker-main.ts`) sharing the queue in Redis.
 */
export async function startIndexer(
  config: IndexerConfig,
  deps: { log?: Logger; meter?: Meter } = {},
): Promise<RunningIndexer> {
  const log = deps.log ?? createLogger("doc-indexer", config.LOG_LEVEL);
  // Before anything is opened or written: a Redis that would lose jobs, or a bad teacher, stops the start here.
  await checkStore(config, log);
  await checkTeacher(config.TEACHER_BUNDLE_DIR, teacherDims(config));
  const ownMetrics = deps.meter ? null : await startMetrics("doc-indexer", config.METRICS_PORT, config.HOST);
  const meter = deps.meter ?? ownMetrics!.meter;
  const keys = new Keys(config.QUEUE_PREFIX);
  const storeLabel = storeName(config);
  // One log line per outage, not one per failed reconnect (every client reports each of those).
  const watch = new ConnectionWatch(storeLabel, log);
  // The API's side of Redis fails fast (redis-connection.ts); an in-process worker opens its own, which waits.
  const store = await openSideStore(config, "api", watch);
  const { redis, queue, deadLetters } = store;
  const ann = AnnGateway.fromConfig(config);
  const { teachers, registered: teacher } = await TeacherRegistry.configured(redis, keys, config, log);
  const metrics = new IndexerMetrics(meter, async () => queue.getJobCounts("waiting", "active", "delayed", "failed"));
  const producer = new Producer(config, queue, new Submissions(redis, keys, config.KEEP_JOBS), ann, teachers, log);
  const worker = config.RUN_WORKER ? await startWorker(config, { log, meter, shared: { metrics, ann, watch } }) : null;

  const server = await startServer({
    services: [
      bind(
        "tandem.v1.Indexer",
        IndexerService,
        withStoreErrors(
          indexerHandlers({
            config,
            producer,
            jobs: new JobStatusView(redis, queue, deadLetters, keys),
            reindex: { producer, ann, teachers, redis, keys, log },
            queue,
            redis,
            keys,
            teacher: worker?.teacher ?? null,
          }),
          storeLabel,
        ),
      ),
    ],
    host: config.HOST,
    port: config.PORT,
    maxMessageBytes: config.MAX_MESSAGE_BYTES,
    log,
    meter,
    security: serverSecurity(config),
  });
  server.setServing(true);
  log.info(
    {
      port: server.port,
      space: teacher.space,
      queue: `${config.QUEUE_PREFIX}`,
      inProcessWorker: worker !== null,
      ann: config.ANN_ADDR,
    },
    "doc-indexer serving",
  );

  return {
    port: server.port,
    log,
    worker,
    async stop() {
      await server.shutdown(config.SHUTDOWN_GRACE_MS);
      await worker?.stop();
      await store.close();
      ann.close();
      await ownMetrics?.shutdown();
    },
  };
}
