import { type Meter, metrics } from "@opentelemetry/api";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { MeterProvider } from "@opentelemetry/sdk-metrics";

export type { Meter };

export interface Metrics {
  meter: Meter;
  /** The port /metrics listens on, or 0 when disabled. */
  port: number;
  shutdown(): Promise<void>;
}

/**
 * One MeterProvider per process. With `port` > 0 a Prometheus endpoint serves
 * /metrics on `host`; with 0 the instruments still work (tests read them
 * through the endpoint on an ephemeral port instead).
 */
export async function startMetrics(service: string, port: number, host = "127.0.0.1"): Promise<Metrics> {
  const readers = [];
  let exporter: PrometheusExporter | undefined;
  if (port > 0) {
    exporter = new PrometheusExporter({ port, host, preventServerStart: true });
    readers.push(exporter);
  }
  const provider = new MeterProvider({
    resource: resourceFromAttributes({ "service.name": service }),
    readers,
  });
  metrics.setGlobalMeterProvider(provider);
  if (exporter) await exporter.startServer();
  return {
    meter: provider.getMeter(service),
    port,
    async shutdown() {
      await provider.shutdown();
    },
  };
}

/** The process-wide meter (a no-op until startMetrics ran): for components built outside a service. */
export function globalMeter(name: string): Meter {
  return metrics.getMeter(name);
}

/** Bucket boundaries for latencies in milliseconds: 0.25 ms .. 10 s. */
export const LATENCY_BUCKETS_MS = [0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 25, 50, 100, 250, 500, 1000, 2500, 10000];
