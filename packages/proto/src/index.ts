import { configureTextEncoding } from "@bufbuild/protobuf/wire";

// proto3 requires `string` fields to be valid UTF-8. The default decoder would
// silently turn bad bytes into U+FFFD; a fatal decoder makes the message fail
// to decode, which the service kit answers with INVALID_ARGUMENT.
const fatalDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();
configureTextEncoding({
  encodeUtf8: (text: string) => encoder.encode(text),
  decodeUtf8: (bytes: Uint8Array) => fatalDecoder.decode(bytes),
  checkUtf8: (text: string) => text.isWellFormed(),
});

export * from "./gen/tandem/v1/ann.js";
export * from "./gen/tandem/v1/common.js";
export * from "./gen/tandem/v1/encoder.js";
export * from "./gen/tandem/v1/indexer.js";
export { PROTO_FILES, PROTO_ROOT } from "./paths.js";
export { decodeVector, encodeVector, vectorByteLength } from "./vector.js";
