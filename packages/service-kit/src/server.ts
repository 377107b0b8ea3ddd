import {
  type handleClientStreamingCall,
  type handleUnaryCall,
  type Metadata,
  type MethodDefinition,
  Server,
  ServerCredentials,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServiceDefinition,
  type ServiceError,
  type sendUnaryData,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { context, type Meter, ValueType } from "@opentelemetry/api";
import { PROTO_FILES, PROTO_ROOT } from "@tandem/proto";
import { HealthImplementation, protoPath as healthProtoPath } from "grpc-health-check";
import { DecodeFailure, InvalidArgumentError, TandemError } from "./errors.js";
import type { Logger } from "./logger.js";
import { LATENCY_BUCKETS_MS } from "./metrics.js";
import { authInterceptor, type ServerSecurity } from "./security.js";
import { endRpcSpan, startServerSpan } from "./telemetry.js";

/** What a handler knows about its call besides the request. */
export interface CallContext {
  /** Aborted when the client cancels or the deadline passes. */
  signal: AbortSignal;
  /** Epoch milliseconds, or Infinity when the client set no deadline. */
  deadline: number;
  metadata: Metadata;
  log: Logger;
}

type Req<M> = M extends { requestDeserialize: (b: Buffer) => infer R } ? R : never;
type Res<M> = M extends { responseSerialize: (v: infer R) => Buffer } ? R : never;

/** Handlers typed from a generated service definition: promise-returning, no callbacks. */
export type Handlers<D> = {
  [K in keyof D]: D[K] extends { requestStream: true }
    ? (requests: AsyncIterable<Req<D[K]>>, ctx: CallContext) => Promise<Res<D[K]>>
    : (request: Req<D[K]>, ctx: CallContext) => Promise<Res<D[K]>>;
};

export interface ServiceBinding<D extends ServiceDefinition = ServiceDefinition> {
  /** Fully qualified name, e.g. "tandem.v1.QueryEncoder": the health service key. */
  name: string;
  definition: D;
  handlers: Handlers<D>;
}

export function bind<D extends ServiceDefinition>(name: string, definition: D, handlers: Handlers<D>): ServiceBinding {
  return { name, definition, handlers: handlers as Handlers<ServiceDefinition> } as ServiceBinding;
}

export interface ServerOptions {
  services: ServiceBinding[];
  host: string;
  /** 0 picks a free port. */
  port: number;
  maxMessageBytes: number;
  log: Logger;
  meter: Meter;
  /** TLS/mTLS credentials and bearer tokens, from `serverSecurity(config)`; default plaintext, no auth. */
  security?: ServerSecurity;
  /** Kept for callers from before `security`; ignored when `security` is given. */
  credentials?: ServerCredentials;
}

export interface RunningServer {
  port: number;
  /** The plaintext health-only port, or 0. */
  healthPort: number;
  server: Server;
  /** SERVING / NOT_SERVING for every registered service and the overall "" key. */
  setServing(serving: boolean): void;
  /** Health NOT_SERVING, stop accepting, wait up to `graceMs` for calls in flight, then force. */
  shutdown(graceMs: number): Promise<void>;
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const tokens = opts.security?.tokens ?? null;
  const server = new Server({
    "grpc.max_receive_message_length": opts.maxMessageBytes,
    "grpc.max_send_message_length": opts.maxMessageBytes,
    // Auth as a transport interceptor: it also covers reflection, and exempts only health.
    interceptors: tokens ? [authInterceptor(tokens)] : [],
  });
  const duration = opts.meter.createHistogram("rpc_server_duration", {
    unit: "ms",
    description: "gRPC server call latency by method and status code",
    valueType: ValueType.DOUBLE,
    advice: { explicitBucketBoundaries: LATENCY_BUCKETS_MS },
  });

  for (const binding of opts.services) {
    const definition: Record<string, MethodDefinition<unknown, unknown>> = {};
    const impl: UntypedServiceImplementation = {};
    for (const [method, def] of Object.entries(binding.definition)) {
      definition[method] = tolerantDeserializer(def);
      const handler = (binding.handlers as Record<string, unknown>)[method];
      if (typeof handler !== "function") throw new Error(`${binding.name}: no handler for ${method}`);
      const observe = (code: status, started: number) =>
        duration.record(performance.now() - started, { method: def.path, code: status[code] });
      impl[method] = def.requestStream
        ? wrapClientStream(handler as StreamFn, def.path, opts.log, observe)
        : wrapUnary(handler as UnaryFn, def.path, opts.log, observe);
    }
    server.addService(definition, impl);
  }

  const health = new HealthImplementation({ "": "NOT_SERVING" });
  const names = ["", ...opts.services.map((s) => s.name)];
  const setServing = (serving: boolean) => {
    for (const n of names) health.setStatus(n, serving ? "SERVING" : "NOT_SERVING");
  };
  setServing(false);
  health.addToServer(server);
  // Health only, no TLS, no token: what a kubelet gRPC probe can reach when the main port speaks TLS.
  const healthServer = opts.security?.healthPort ? new Server() : null;
  if (healthServer) health.addToServer(healthServer);

  const packageDefinition = protoLoader.loadSync([...PROTO_FILES, healthProtoPath], {
    includeDirs: [PROTO_ROOT],
  });
  new ReflectionService(packageDefinition).addToServer(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(
      `${opts.host.includes(":") ? `[${opts.host}]` : opts.host}:${opts.port}`,
      opts.security?.credentials ?? opts.credentials ?? ServerCredentials.createInsecure(),
      (err, bound) => (err ? reject(err) : resolve(bound)),
    );
  });

  const bindAddr = (p: number) => `${opts.host.includes(":") ? `[${opts.host}]` : opts.host}:${p}`;
  const healthPort = healthServer
    ? await new Promise<number>((resolve, reject) => {
        healthServer.bindAsync(
          bindAddr(opts.security?.healthPort ?? 0),
          ServerCredentials.createInsecure(),
          (err, p) => (err ? reject(err) : resolve(p)),
        );
      }).catch((err: unknown) => {
        server.forceShutdown();
        throw err;
      })
    : 0;

  return {
    port,
    healthPort,
    server,
    setServing,
    shutdown: (graceMs) =>
      new Promise<void>((resolve) => {
        setServing(false);
        healthServer?.forceShutdown();
        const force = setTimeout(() => {
          opts.log.warn({ graceMs }, "shutdown grace period over: cancelling calls still in flight");
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}

type UnaryFn = (request: unknown, ctx: CallContext) => Promise<unknown>;
type StreamFn = (requests: AsyncIterable<unknown>, ctx: CallContext) => Promise<unknown>;
type Observe = (code: status, started: number) => void;

/** A request that fails to decode becomes a DecodeFailure value instead of an INTERNAL error. */
function tolerantDeserializer(def: MethodDefinition<unknown, unknown>): MethodDefinition<unknown, unknown> {
  const decode = def.requestDeserialize;
  return {
    ...def,
    requestDeserialize: (buf: Buffer) => {
      try {
        return decode(buf);
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        return new DecodeFailure(
          /utf-?8|encoded data/i.test(reason) ? "request contains a string field that is not valid UTF-8" : reason,
        );
      }
    },
  };
}

/**
 * The handler's view of its call, and `settle` for when it has answered: grpc-js also reports a
 * call "cancelled" when its stream closes after the answer, which must not abort work or run the
 * cancellation paths (the encoder's queue builds an error for each) for a call already served.
 */
function contextOf(call: ServerUnaryCall<unknown, unknown> | ServerReadableStream<unknown, unknown>, log: Logger) {
  const controller = new AbortController();
  const onCancel = () => controller.abort(new Error("call cancelled by the client or its deadline passed"));
  call.on("cancelled", onCancel);
  const deadline = call.getDeadline();
  const ctx: CallContext = {
    signal: controller.signal,
    deadline: deadline instanceof Date ? deadline.getTime() : deadline,
    metadata: call.metadata,
    log,
  };
  return { ctx, settle: () => call.off("cancelled", onCancel) };
}

function toServiceError(err: unknown, method: string, log: Logger): Partial<ServiceError> {
  if (err instanceof TandemError) return { code: err.code, details: err.message };
  log.error({ err, method }, "unexpected error in handler");
  const message = err instanceof Error ? err.message : String(err);
  return { code: status.INTERNAL, details: `internal error: ${message}` };
}

function wrapUnary(fn: UnaryFn, method: string, log: Logger, observe: Observe): handleUnaryCall<unknown, unknown> {
  return (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
    const started = performance.now();
    const { span, ctx } = startServerSpan(method, call.metadata);
    const finish = (err: Partial<ServiceError> | null, value?: unknown) => {
      const code = err?.code ?? status.OK;
      observe(code, started);
      endRpcSpan(span, code, err?.details);
      callback(err, value);
    };
    if (call.request instanceof DecodeFailure) {
      finish(toServiceError(new InvalidArgumentError(call.request.reason), method, log));
      return;
    }
    // The handler runs inside the server span: its logs and outgoing calls carry the trace.
    const handler = contextOf(call, log);
    context
      .with(ctx, () => fn(call.request, handler.ctx))
      .finally(handler.settle)
      .then(
        (value) => finish(null, value),
        (err: unknown) => finish(toServiceError(err, method, log)),
      );
  };
}

function wrapClientStream(
  fn: StreamFn,
  method: string,
  log: Logger,
  observe: Observe,
): handleClientStreamingCall<unknown, unknown> {
  return (call: ServerReadableStream<unknown, unknown>, callback: sendUnaryData<unknown>) => {
    const started = performance.now();
    async function* messages(): AsyncIterable<unknown> {
      for await (const msg of call) {
        if (msg instanceof DecodeFailure) throw new InvalidArgumentError(msg.reason);
        yield msg;
      }
    }
    const { span, ctx } = startServerSpan(method, call.metadata);
    const handler = contextOf(call, log);
    context
      .with(ctx, () => fn(messages(), handler.ctx))
      .finally(handler.settle)
      .then(
        (value) => {
          observe(status.OK, started);
          endRpcSpan(span, status.OK);
          callback(null, value);
        },
        (err: unknown) => {
          const e = toServiceError(err, method, log);
          observe(e.code ?? status.INTERNAL, started);
          endRpcSpan(span, e.code ?? status.INTERNAL, e.details);
          callback(e);
        },
      );
  };
}
