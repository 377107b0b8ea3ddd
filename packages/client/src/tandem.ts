import { Ann } from "./ann.js";
import { Encoder } from "./encoder.js";
import { Indexer } from "./indexer.js";
import type { ServiceOptions } from "./options.js";

/** The services' own default ports on this machine: what `tandem up` starts. */
export const DEFAULT_ADDRESSES = {
  encoder: "127.0.0.1:50051",
  ann: "127.0.0.1:50052",
  indexer: "127.0.0.1:50053",
} as const;

export type ServiceName = keyof typeof DEFAULT_ADDRESSES;

/** Options shared by the three services; each service's own entry (an address, or full options) wins. */
export interface TandemOptions extends Omit<ServiceOptions, "address"> {
  encoder?: string | ServiceOptions;
  ann?: string | ServiceOptions;
  indexer?: string | ServiceOptions;
}

/**
 * The three services behind one object. Each client is made on first use, so a program that only
 * searches never opens a channel to the indexer.
 */
export class TandemClient {
  private made: { encoder?: Encoder; ann?: Ann; indexer?: Indexer } = {};

  constructor(private readonly options: TandemOptions = {}) {}

  get encoder(): Encoder {
    this.made.encoder ??= new Encoder(this.serviceOptions("encoder"));
    return this.made.encoder;
  }

  get ann(): Ann {
    this.made.ann ??= new Ann(this.serviceOptions("ann"));
    return this.made.ann;
  }

  get indexer(): Indexer {
    this.made.indexer ??= new Indexer(this.serviceOptions("indexer"));
    return this.made.indexer;
  }

  close(): void {
    for (const c of Object.values(this.made)) c.close();
    this.made = {};
  }

  private serviceOptions(service: ServiceName): ServiceOptions {
    const { encoder: _e, ann: _a, indexer: _i, ...shared } = this.options;
    const own = this.options[service];
    return typeof own === "object" ? { ...shared, ...own } : { ...shared, address: own ?? DEFAULT_ADDRESSES[service] };
  }
}
