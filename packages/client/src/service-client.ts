import { type ChannelCredentials, type Client, type ClientOptions, Metadata } from "@grpc/grpc-js";
import { bearerMetadata, clientTransport, type RetryPolicy, retryUnavailable, unary } from "@tandem/service-kit";
import { toRpcError } from "./errors.js";
import { type CallOptions, DEFAULTS, type ServiceOptions } from "./options.js";

type UnaryMethod<Req, Res> = Parameters<typeof unary<Req, Res>>[0];
type ClientConstructor<C> = new (address: string, credentials: ChannelCredentials, options: ClientOptions) => C;

/** Whether a call may be sent again after UNAVAILABLE: only when repeating it cannot change the outcome. */
export type Idempotency = "idempotent" | "once";

/**
 * What every service's client shares: the channel (TLS, token, message limits), deadlines, the
 * retry of idempotent calls, and failures as RpcError naming the service's method and address.
 */
export abstract class ServiceClient<C extends Client> {
  readonly address: string;
  protected readonly client: C;

  constructor(
    Ctor: ClientConstructor<C>,
    /** The proto service's name, for error messages: "Ann", "Indexer", "QueryEncoder". */
    private readonly service: string,
    protected readonly options: ServiceOptions,
  ) {
    this.address = options.address;
    const t = clientTransport(options.maxMessageBytes ?? DEFAULTS.maxMessageBytes, options.security);
    this.client = new Ctor(options.address, t.credentials, t.options);
  }

  close(): void {
    this.client.close();
  }

  /**
   * One unary call, retried on UNAVAILABLE when `idempotency` allows it, as the service's options
   * say or, for a call with its own needs (a job's follow), as `policy` says.
   */
  protected async call<Req, Res>(
    method: string,
    fn: UnaryMethod<Req, Res>,
    request: Req,
    opts: CallOptions,
    idempotency: Idempotency,
    policy?: Omit<RetryPolicy, "signal">,
  ): Promise<Res> {
    const once = () =>
      unary(fn.bind(this.client), request, {
        timeoutMs: this.deadline(opts, this.options.deadlineMs ?? DEFAULTS.deadlineMs),
        metadata: this.metadata(),
        signal: opts.signal,
      });
    const retry = policy ?? this.options.retry ?? DEFAULTS.retry;
    try {
      if (idempotency === "once" || retry === false) return await once();
      return await retryUnavailable(once, { ...retry, signal: opts.signal });
    } catch (err) {
      throw this.fail(err, method);
    }
  }

  /** The deadline in ms from now, or undefined for none. */
  protected deadline(opts: CallOptions, fallback: number): number | undefined {
    return opts.deadlineMs === null ? undefined : (opts.deadlineMs ?? fallback);
  }

  protected streamDeadline(opts: CallOptions): number | undefined {
    return this.deadline(opts, this.options.streamDeadlineMs ?? DEFAULTS.streamDeadlineMs);
  }

  /** Per-call metadata: the bearer token when given as a value (a token file is sent by the channel). */
  protected metadata(): Metadata {
    return this.options.token ? bearerMetadata(this.options.token) : new Metadata();
  }

  protected fail(err: unknown, method: string): unknown {
    return toRpcError(err, `${this.service}.${method}`, this.address);
  }
}
