import { ConfigError } from "./config.js";
import type { Logger } from "./logger.js";
import { startTracing } from "./telemetry.js";

export interface Stoppable {
  stop(): Promise<void>;
}

/**
 * The `main` of every service: start, then stop cleanly on SIGINT/SIGTERM.
 * A configuration error prints what is wrong and exits 2 (no stack trace: the
 * operator needs the variable name, not our call graph).
 */
export function runService(name: string, start: () => Promise<Stoppable & { log: Logger }>): void {
  // Tracing first (a no-op unless OTEL_EXPORTER_OTLP_ENDPOINT is set), flushed after the service stops.
  let flushTraces = async () => {};
  startTracing(name)
    .then((tracing) => {
      flushTraces = tracing.shutdown;
      return start();
    })
    .then(
      (svc) => {
        let stopping = false;
        const onSignal = (signal: NodeJS.Signals) => {
          if (stopping) {
            svc.log.warn({ signal }, "second signal: exiting now");
            process.exit(130);
          }
          stopping = true;
          svc.log.info({ signal }, "shutting down");
          svc
            .stop()
            .then(() => flushTraces().catch(() => {}))
            .then(
              () => process.exit(0),
              (err: unknown) => {
                svc.log.error({ err }, "error during shutdown");
                process.exit(1);
              },
            );
        };
        process.on("SIGINT", onSignal);
        process.on("SIGTERM", onSignal);
      },
      (err: unknown) => {
        if (err instanceof ConfigError) {
          process.stderr.write(`${name}: ${err.message}\n`);
          process.exit(2);
        }
        process.stderr.write(
          `${name}: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
        );
        process.exit(1);
      },
    );
}
