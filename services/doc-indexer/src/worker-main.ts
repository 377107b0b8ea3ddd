// A queue worker as its own process: no gRPC API, just the teacher and the queue.
import { createLogger, runService, startMetrics } from "@tandem/service-kit";
import { indexerConfig } from "./config.js";
import { checkStore } from "./store-checks.js";
import { startWorker } from "./worker.js";

runService("doc-indexer-worker", async () => {
  const config = indexerConfig();
  const log = createLogger("doc-indexer-worker", config.LOG_LEVEL);
  await checkStore(config, log);
  const metrics = await startMetrics("doc-indexer-worker", config.METRICS_PORT, config.HOST);
  const worker = await startWorker(config, { log, meter: metrics.meter });
  return {
    log,
    async stop() {
      await worker.stop();
      await metrics.shutdown();
    },
  };
});
