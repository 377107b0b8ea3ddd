import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { AnnService } from "@tandem/proto";
import {
  bind,
  createLogger,
  type Logger,
  type Meter,
  serverSecurity,
  startMetrics,
  startServer,
  upstreamSecurity,
} from "@tandem/service-kit";
import { type AnnConfig, annConfig } from "./config.js";
import { EmbeddedBackend } from "./embedded.js";
import { EncoderClient } from "./encoder-client.js";
import { annHandlers } from "./handlers.js";
import { Registry } from "./registry.js";

export { type AnnConfig, annConfig };

export interface RunningAnn {
  port: number;
  log: Logger;
  stop(): Promise<void>;
}

/**
 * Starts the ANN service: bind the port (health NOT_SERVING), load every
 * collection (snapshot + WAL replay), then report SERVING. `deps` lets a test
 * share its logger and meter.
 */
export async function startAnn(config: AnnConfig, deps: { log?: Logger; meter?: Meter } = {}): Promise<RunningAnn> {
  const log = deps.log ?? createLogger("ann", config.LOG_LEVEL);
  const metrics = deps.meter ? null : await startMetrics("ann", config.METRICS_PORT, config.HOST);
  const meter = deps.meter ?? metrics!.meter;
  const dataDir = resolve(config.DATA_DIR);
  mkdirSync(dataDir, { recursive: true });

  const encoder = config.ENCODER_ADDR
    ? new EncoderClient(
        config.ENCODER_ADDR,
        config.ENCODER_TIMEOUT_MS,
        config.ENCODER_INFO_TTL_MS,
        config.MAX_MESSAGE_BYTES,
        upstreamSecurity(config, "ENCODER"),
      )
    : null;
  let registry: Registry | null = null;

  const server = await startServer({
    services: [bind("tandem.v1.Ann", AnnService, annHandlers({ registry: () => registry, encoder, config }))],
    host: config.HOST,
    port: config.PORT,
    maxMessageBytes: config.MAX_MESSAGE_BYTES,
    log,
    meter,
    security: serverSecurity(config),
  });

  const started = performance.now();
  try {
    registry = await Registry.open(
      dataDir,
      EmbeddedBackend.factory({
        log,
        maxPoints: config.MAX_POINTS_PER_COLLECTION,
        filterMaxStringBytes: config.FILTER_MAX_STRING_BYTES,
        filterExactMax: config.FILTER_EXACT_MAX,
        filterMaxOverfetch: config.FILTER_MAX_OVERFETCH,
        threads: config.SEARCH_THREADS,
        snapshotWalBytes: config.SNAPSHOT_WAL_BYTES,
        faultSnapshotStallMs: config.FAULT_SNAPSHOT_STALL_MS,
        rebuildChurn: config.INDEX_REBUILD_CHURN,
        rebuildMinPoints: config.INDEX_REBUILD_MIN_POINTS,
        searchBatchMax: config.SEARCH_BATCH_MAX,
      }),
      log,
      config.MAX_COLLECTIONS,
    );
  } catch (err) {
    await server.shutdown(0);
    throw err;
  }
  const reg: Registry = registry;

  meter.createObservableGauge("ann_collection_points", { description: "points per collection" }).addCallback((obs) => {
    for (const c of reg.list()) obs.observe(c.count, { collection: c.meta.name });
  });
  meter
    .createObservableGauge("ann_wal_bytes", { description: "WAL bytes since the last snapshot", unit: "By" })
    .addCallback((obs) => {
      for (const c of reg.list()) obs.observe(c.walBytes, { collection: c.meta.name });
    });
  meter
    .createObservableGauge("ann_index_churn", {
      description: "points replaced or deleted since the collection's graph was built (INDEX_REBUILD_CHURN)",
    })
    .addCallback((obs) => {
      for (const c of reg.list()) obs.observe(c.indexChurn, { collection: c.meta.name });
    });

  const timer =
    config.SNAPSHOT_INTERVAL_MS > 0
      ? setInterval(() => {
          void reg.snapshotAll();
        }, config.SNAPSHOT_INTERVAL_MS)
      : null;
  timer?.unref();

  server.setServing(true);
  log.info(
    {
      port: server.port,
      dataDir,
      collections: reg.list().length,
      loadMs: Math.round(performance.now() - started),
      encoder: config.ENCODER_ADDR || null,
    },
    "ann serving",
  );

  return {
    port: server.port,
    log,
    async stop() {
      if (timer) clearInterval(timer);
      await server.shutdown(config.SHUTDOWN_GRACE_MS);
      await reg.close(config.SNAPSHOT_ON_SHUTDOWN);
      encoder?.close();
      await metrics?.shutdown();
    },
  };
}
