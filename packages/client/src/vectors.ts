import { status } from "@grpc/grpc-js";
import { decodeVector } from "@tandem/proto";
import { RpcError } from "./errors.js";

/** A vector from a response, or an INTERNAL RpcError: a response that does not decode is the server's fault. */
export function responseVector(
  bytes: Uint8Array,
  dims: number | undefined,
  method: string,
  address: string,
): Float32Array {
  const v = decodeVector(bytes, dims);
  if (typeof v === "string") throw new RpcError(status.INTERNAL, `${address} sent a bad vector: ${v}`, method, address);
  return v;
}
