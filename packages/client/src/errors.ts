import { Metadata, type ServiceError, status } from "@grpc/grpc-js";

/**
 * A call that a Tandem service (or the transport to it) answered with a non-OK status. It keeps the
 * fields of grpc-js's ServiceError (`code`, `details`, `metadata`, and the same `message`), so code
 * written against raw clients keeps working, and adds which call failed where.
 *
 * Not service-kit's TandemError: that one is what a handler throws to choose its own status; an
 * RpcError escaping a handler would otherwise forward an upstream's status as the service's own.
 */
export class RpcError extends Error {
  override readonly name = "RpcError";

  constructor(
    readonly code: status,
    readonly details: string,
    /** "Ann.Search", "Indexer.JobStatus", … */
    readonly method: string,
    readonly address: string,
    readonly metadata: Metadata = new Metadata(),
    message = `${code} ${status[code]}: ${details}`,
  ) {
    super(message);
  }

  /** The status's name: "NOT_FOUND", "UNAVAILABLE", … */
  get codeName(): string {
    return status[this.code] ?? String(this.code);
  }
}

export function isRpcError(err: unknown, code?: status): err is RpcError {
  return err instanceof RpcError && (code === undefined || err.code === code);
}

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === "number";
}

/** A grpc-js failure as an RpcError; anything else (a bug, an abort of our own) unchanged. */
export function toRpcError(err: unknown, method: string, address: string): unknown {
  if (err instanceof RpcError || !isServiceError(err)) return err;
  return new RpcError(err.code, err.details ?? err.message, method, address, err.metadata, err.message);
}
