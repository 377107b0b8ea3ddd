import {
  type CallOptions,
  type ChannelCredentials,
  type ClientOptions,
  type ClientUnaryCall,
  credentials,
  type Interceptor,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";
import { bearerInterceptor, type ClientSecurity, clientCredentials } from "./security.js";
import { tracingInterceptor } from "./telemetry.js";

export interface CallOpts {
  /** Milliseconds from now. */
  timeoutMs?: number;
  metadata?: Metadata;
  signal?: AbortSignal;
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** Promise form of a generated unary client method: `await unary(client.encode.bind(client), req)`. */
export function unary<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, opts: CallOpts = {}): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    const options: Partial<CallOptions> = {};
    if (opts.timeoutMs !== undefined) options.deadline = Date.now() + opts.timeoutMs;
    const call = method(request, opts.metadata ?? new Metadata(), options, (err, res) =>
      err ? reject(err) : resolve(res),
    );
    opts.signal?.addEventListener("abort", () => call.cancel(), { once: true });
  });
}

/**
 * Options for a generated client's constructor: message-size limits, keepalive,
 * the tracing interceptor (a CLIENT span per call, `traceparent` in metadata)
 * and, with `sec.tokenFile`, the bearer token on every call. A fresh object
 * each time (grpc-js deletes `interceptors` from the object it is given).
 */
export function channelOptions(maxMessageBytes: number, sec: ClientSecurity = {}): ClientOptions {
  const interceptors: Interceptor[] = [tracingInterceptor];
  if (sec.tokenFile) interceptors.push(bearerInterceptor(sec.tokenFile));
  const options: ClientOptions = {
    "grpc.max_receive_message_length": maxMessageBytes,
    "grpc.max_send_message_length": maxMessageBytes,
    "grpc.keepalive_time_ms": 30_000,
    interceptors,
  };
  if (sec.caFile && sec.serverName) options["grpc.ssl_target_name_override"] = sec.serverName;
  return options;
}

/** Credentials and options together: `new XClient(addr, t.credentials, t.options)`. */
export function clientTransport(
  maxMessageBytes: number,
  sec: ClientSecurity = {},
): { credentials: ChannelCredentials; options: ClientOptions } {
  return { credentials: clientCredentials(sec), options: channelOptions(maxMessageBytes, sec) };
}

export const insecure = credentials.createInsecure;
