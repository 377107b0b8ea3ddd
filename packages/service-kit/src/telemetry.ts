import { InterceptingCall, type Interceptor, ListenerBuilder, type Metadata, status } from "@grpc/grpc-js";
import {
  type Context,
  context,
  isSpanContextValid,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";

/**
 * Tracing without monkey-patching: every gRPC server in Tandem goes through
 * `startServer` and every client through `channelOptions`, so the kit opens
 * the server and client spans itself and carries W3C `traceparent` in gRPC
 * metadata (and in BullMQ job data, via `traceCarrier`/`withTraceCarrier`).
 * This needs no `--import` loader hook, works the same under tsx, in tests
 * that run several services in one process, and in bundled builds.
 * Until `startTracing` runs, the OTel API is a no-op: nothing is recorded.
 */

const TRACER = "tandem";
const tracer = () => trace.getTracer(TRACER);

export interface TracingOptions {
  /** Extra processors (tests pass a SimpleSpanProcessor over an InMemorySpanExporter). */
  processors?: SpanProcessor[];
  env?: NodeJS.ProcessEnv;
}

export interface Tracing {
  /** True when an exporter or processor is configured (else nothing was installed). */
  enabled: boolean;
  shutdown(): Promise<void>;
}

let installed: Tracing | null = null;

/**
 * Installs the process-wide tracer provider, once. Exporter by environment:
 * OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) -> OTLP/gRPC, batched;
 * OTEL_TRACES_EXPORTER=console -> stdout (debugging); otherwise none and the
 * call does nothing, so a plain run pays nothing for tracing. Sampling follows
 * OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (the SDK reads them).
 */
export async function startTracing(service: string, opts: TracingOptions = {}): Promise<Tracing> {
  if (installed) return installed;
  const env = opts.env ?? process.env;
  const processors: SpanProcessor[] = [...(opts.processors ?? [])];
  if (env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) {
    // Loaded only when used: the exporter brings its own gRPC stack.
    const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-grpc");
    processors.push(new BatchSpanProcessor(new OTLPTraceExporter()));
  } else if (env.OTEL_TRACES_EXPORTER === "console") {
    processors.push(new BatchSpanProcessor(new ConsoleSpanExporter()));
  }
  if (processors.length === 0) return { enabled: false, shutdown: async () => {} };

  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": env.OTEL_SERVICE_NAME || service }),
    spanProcessors: processors,
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  installed = { enabled: true, shutdown: () => provider.shutdown() };
  return installed;
}

/** Trace and span ids of the active span, for log lines (pino mixin). */
export function traceFields(): { trace_id?: string; span_id?: string } {
  const sc = trace.getActiveSpan()?.spanContext();
  return sc && isSpanContextValid(sc) ? { trace_id: sc.traceId, span_id: sc.spanId } : {};
}

// ---- gRPC ---------------------------------------------------------------------

const metadataGetter: TextMapGetter<Metadata> = {
  keys: (md) => Object.keys(md.getMap()),
  get: (md, key) => {
    const values = md.get(key);
    return values.length ? values.map(String) : undefined;
  },
};
const metadataSetter: TextMapSetter<Metadata> = { set: (md, key, value) => md.set(key, value) };

function rpcAttributes(path: string) {
  const [, service = "", method = ""] = path.split("/");
  return { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method };
}

/** Server side: a SERVER span, child of the caller's `traceparent`; `run` executes inside it. */
export function startServerSpan(path: string, metadata: Metadata): { span: Span; ctx: Context } {
  const parent = propagation.extract(ROOT_CONTEXT, metadata, metadataGetter);
  const span = tracer().startSpan(path.slice(1), { kind: SpanKind.SERVER, attributes: rpcAttributes(path) }, parent);
  return { span, ctx: trace.setSpan(parent, span) };
}

export function endRpcSpan(span: Span, code: status, details?: string): void {
  span.setAttribute("rpc.grpc.status_code", code);
  if (code !== status.OK) span.setStatus({ code: SpanStatusCode.ERROR, message: `${status[code]}: ${details ?? ""}` });
  span.end();
}

/** Client side: a CLIENT span per call, child of the active context, propagated in metadata. */
export const tracingInterceptor: Interceptor = (options, nextCall) => {
  const path = options.method_definition.path;
  const parent = context.active();
  // Without a provider the API hands out non-recording spans: no cost worth a branch.
  const span = tracer().startSpan(path.slice(1), { kind: SpanKind.CLIENT, attributes: rpcAttributes(path) }, parent);
  return new InterceptingCall(nextCall(options), {
    start(metadata, _listener, next) {
      // The partial listener below is layered over the caller's by grpc-js.
      propagation.inject(trace.setSpan(parent, span), metadata, metadataSetter);
      next(
        metadata,
        new ListenerBuilder()
          .withOnReceiveStatus((st, nextStatus) => {
            endRpcSpan(span, st.code, st.details);
            nextStatus(st);
          })
          .build(),
      );
    },
  });
};

// ---- queues -------------------------------------------------------------------

/** The active trace context as a plain object, to store in a job's data. */
export function traceCarrier(): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier;
}

/**
 * Runs `fn` inside a CONSUMER span whose parent is the context stored by
 * `traceCarrier` (absent or empty: a new trace). Errors mark the span.
 */
export async function withTraceCarrier<T>(
  carrier: Record<string, string> | undefined,
  name: string,
  attributes: Record<string, string | number>,
  fn: () => Promise<T>,
): Promise<T> {
  const parent = propagation.extract(ROOT_CONTEXT, carrier ?? {});
  const span = tracer().startSpan(name, { kind: SpanKind.CONSUMER, attributes }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), fn);
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    throw err;
  } finally {
    span.end();
  }
}
