import { fileURLToPath } from "node:url";

/** The .proto sources, for server reflection (the generated code carries no descriptors). */
export const PROTO_ROOT = fileURLToPath(new URL("../../../proto", import.meta.url));
export const PROTO_FILES = ["tandem/v1/encoder.proto", "tandem/v1/ann.proto", "tandem/v1/indexer.proto"];
