/**
 * Where the services are. Flags win over the environment, the environment over
 * these defaults (the services' own default ports). The variable names are the
 * ones the services themselves read for their peers.
 */
export const DEFAULT_ADDRESSES = {
  encoder: "127.0.0.1:50051",
  ann: "127.0.0.1:50052",
  indexer: "127.0.0.1:50053",
} as const;

export const ADDRESS_ENV = { encoder: "ENCODER_ADDR", ann: "ANN_ADDR", indexer: "INDEXER_ADDR" } as const;

export type ServiceName = keyof typeof DEFAULT_ADDRESSES;

export function address(service: ServiceName, flag?: string): string {
  return flag || process.env[ADDRESS_ENV[service]] || DEFAULT_ADDRESSES[service];
}
