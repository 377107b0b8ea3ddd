import { type Logger, pino } from "pino";
import { traceFields } from "./telemetry.js";

export type { Logger };

/** Structured JSON logs on stdout, one line per event; inside a traced call each line carries trace_id/span_id. */
export function createLogger(service: string, level = process.env.LOG_LEVEL ?? "info"): Logger {
  return pino({ name: service, level, base: { service }, mixin: traceFields });
}
