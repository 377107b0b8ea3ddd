import { type DestinationStream, type Logger, pino } from "pino";
import { traceFields } from "./telemetry.js";

export type { Logger };

/**
 * Structured JSON logs, one line per event (on stdout unless `destination`, e.g. a test reading
 * what a service logged); inside a traced call each line carries trace_id/span_id.
 */
export function createLogger(
  service: string,
  level = process.env.LOG_LEVEL ?? "info",
  destination?: DestinationStream,
): Logger {
  return pino({ name: service, level, base: { service }, mixin: traceFields }, destination);
}
