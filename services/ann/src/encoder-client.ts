import { status } from "@grpc/grpc-js";
import { type Encoded, Encoder, isRpcError } from "@tandem/client";
import {
  type ClientSecurity,
  FailedPreconditionError,
  InvalidArgumentError,
  ResourceExhaustedError,
  TandemError,
  UnavailableError,
} from "@tandem/service-kit";

/**
 * Search{text}: one hop to the QueryEncoder. The encoder's space comes from
 * its Info, cached for `infoTtlMs`, and is checked against the collection's
 * before any encoding; the space in each Encode response is checked again
 * (the encoder may have been redeployed with another model since).
 */

export interface EncodedQuery {
  vector: Float32Array;
  tokens: number;
  truncated: boolean;
}

interface EncoderSpace {
  space: string;
  dims: number;
}

export class EncoderClient {
  private readonly encoder: Encoder;
  private cached: { at: number; info: EncoderSpace } | null = null;

  constructor(
    readonly addr: string,
    timeoutMs: number,
    private readonly infoTtlMs: number,
    maxMessageBytes: number,
    sec: ClientSecurity = {},
  ) {
    // No retries here: a search waits for no encoder, its caller decides whether to try again.
    this.encoder = new Encoder({
      address: addr,
      deadlineMs: timeoutMs,
      maxMessageBytes,
      security: sec,
      retry: false,
    });
  }

  /** Encodes `text` as a query in `space`; FAILED_PRECONDITION (naming both spaces) when the encoder writes another. */
  async encodeFor(text: string, space: string, dims: number, signal: AbortSignal): Promise<EncodedQuery> {
    const info = await this.info(signal);
    checkSpace(info, space, dims);
    let res: Encoded;
    try {
      res = await this.encoder.encode([text], "query", { signal });
    } catch (err) {
      throw this.mapError(err, "Encode");
    }
    if (res.space !== info.space || res.dims !== info.dims) {
      this.cached = null;
      checkSpace({ space: res.space, dims: res.dims }, space, dims);
    }
    const vector = res.vectors[0];
    if (!vector) throw new UnavailableError(`query encoder at ${this.addr} returned no embedding`);
    return { vector, tokens: res.tokens[0] ?? 0, truncated: res.truncated[0] ?? false };
  }

  close(): void {
    this.encoder.close();
  }

  private async info(signal: AbortSignal): Promise<EncoderSpace> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < this.infoTtlMs) return this.cached.info;
    try {
      const res = await this.encoder.info({ signal });
      const model = res.model;
      if (!model) throw new UnavailableError(`query encoder at ${this.addr} sent no model card`);
      const info = { space: model.space, dims: model.dims };
      this.cached = { at: now, info };
      return info;
    } catch (err) {
      throw this.mapError(err, "Info");
    }
  }

  /** The encoder's refusals keep their meaning for our caller; transport failures become UNAVAILABLE. */
  private mapError(err: unknown, method: string): Error {
    if (err instanceof TandemError) return err;
    const reason = isRpcError(err) ? err.details || err.message : err instanceof Error ? err.message : String(err);
    const what = `query encoder at ${this.addr} ${method}: ${reason}`;
    switch (isRpcError(err) ? err.code : status.UNKNOWN) {
      case status.INVALID_ARGUMENT:
        return new InvalidArgumentError(what);
      case status.RESOURCE_EXHAUSTED:
        return new ResourceExhaustedError(what);
      default:
        return new UnavailableError(what);
    }
  }
}

function checkSpace(encoder: EncoderSpace, space: string, dims: number): void {
  if (encoder.space !== space) {
    throw new FailedPreconditionError(
      `space mismatch: the query encoder writes into space "${encoder.space}" but the collection holds space "${space}"`,
    );
  }
  if (encoder.dims !== dims) {
    throw new FailedPreconditionError(
      `dimension mismatch: the query encoder (space "${encoder.space}") emits ${encoder.dims} dimensions, the collection (space "${space}") holds ${dims}`,
    );
  }
}
