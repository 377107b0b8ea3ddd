import { type InfoResponse, QueryEncoderClient, TextKind } from "@tandem/proto";
import type { CallOptions, ServiceOptions } from "./options.js";
import { ServiceClient } from "./service-client.js";
import { responseVector } from "./vectors.js";

/** Queries get the bundle's query prefix, documents its document prefix. */
export type TextKindName = "query" | "document";

export interface Encoded {
  /** One per text, in order; `dims` values each. */
  vectors: Float32Array[];
  /** Tokens fed to the model per text, special tokens included. */
  tokens: number[];
  /** Per text: cut to the model's max tokens. */
  truncated: boolean[];
  modelId: string;
  /** The embedding space the vectors are in: search them only against a collection of this space. */
  space: string;
  dims: number;
}

/** The query encoder (the student). Both calls are idempotent and retried on UNAVAILABLE. */
export class Encoder extends ServiceClient<QueryEncoderClient> {
  constructor(options: ServiceOptions) {
    super(QueryEncoderClient, "QueryEncoder", options);
  }

  async encode(texts: string[], kind: TextKindName = "query", opts: CallOptions = {}): Promise<Encoded> {
    const res = await this.call(
      "Encode",
      this.client.encode,
      { texts, kind: kind === "document" ? TextKind.TEXT_KIND_DOCUMENT : TextKind.TEXT_KIND_QUERY },
      opts,
      "idempotent",
    );
    return {
      vectors: res.embeddings.map((e) => responseVector(e.vector, res.dims, "QueryEncoder.Encode", this.address)),
      tokens: res.embeddings.map((e) => e.tokens),
      truncated: res.embeddings.map((e) => e.truncated),
      modelId: res.modelId,
      space: res.space,
      dims: res.dims,
    };
  }

  /** The model card (space, dims, prefixes, …) and the limits the encoder enforces. */
  info(opts: CallOptions = {}): Promise<InfoResponse> {
    return this.call("Info", this.client.info, {}, opts, "idempotent");
  }
}
