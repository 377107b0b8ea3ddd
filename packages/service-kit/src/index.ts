export { type CallOpts, channelOptions, clientTransport, insecure, unary } from "./client.js";
export {
  ConfigError,
  commonConfig,
  env,
  isSecurityVariable,
  loadConfig,
  securityConfig,
  upstreamConfig,
  upstreamSecurityFromEnv,
} from "./config.js";
export * from "./errors.js";
export { createLogger, type Logger } from "./logger.js";
export { globalMeter, LATENCY_BUCKETS_MS, type Meter, type Metrics, startMetrics } from "./metrics.js";
export { DEFAULT_RETRY_LIMIT_MS, type RetryNotice, type RetryPolicy, retryUnavailable } from "./retry.js";
export { runService, type Stoppable } from "./run.js";
export {
  authInterceptor,
  bearerInterceptor,
  bearerMetadata,
  type ClientSecurity,
  clientCredentials,
  type ServerSecurity,
  type ServerSecurityConfig,
  serverSecurity,
  TokenSet,
  upstreamSecurity,
} from "./security.js";
export {
  bind,
  type CallContext,
  type Handlers,
  type RunningServer,
  type ServerOptions,
  type ServiceBinding,
  startServer,
} from "./server.js";
export {
  startTracing,
  type Tracing,
  type TracingOptions,
  traceCarrier,
  traceFields,
  tracingInterceptor,
  withTraceCarrier,
} from "./telemetry.js";
