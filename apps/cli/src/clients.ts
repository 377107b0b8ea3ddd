import { status } from "@grpc/grpc-js";
import { Ann, Encoder, Indexer, isRpcError, type RpcError, type ServiceOptions } from "@tandem/client";
import type { CollectionInfo, IndexParams } from "@tandem/proto";
import { isSecurityVariable, upstreamSecurityFromEnv } from "@tandem/service-kit";
import type { ServiceName } from "./addresses.js";
import type { TargetSpace } from "./collection-space.js";

/** The prefix of each service's TLS variables: the names the services use for each other. */
const SECURITY_PREFIX = { encoder: "ENCODER", ann: "ANN", indexer: "INDEXER" } as const satisfies Record<
  ServiceName,
  string
>;

/**
 * TLS when <PREFIX>_TLS_CA_FILE is set, mTLS with TLS_CERT_FILE/TLS_KEY_FILE, a bearer token with
 * AUTH_TOKEN_FILE, read from `vars` (the shell's environment unless a command says otherwise).
 * Most commands ask once: nothing retried, so a stopped service is named at once (a job follow
 * rides out outages itself, see jobs.ts). 10 s unless a call says otherwise.
 */
const serviceOptions = (service: ServiceName, address: string, vars: NodeJS.ProcessEnv): ServiceOptions => ({
  address,
  security: upstreamSecurityFromEnv(SECURITY_PREFIX[service], vars),
  deadlineMs: 10_000,
  retry: false,
});

export const annClient = (addr: string, vars: NodeJS.ProcessEnv = process.env) =>
  new Ann(serviceOptions("ann", addr, vars));
export const encoderClient = (addr: string, vars: NodeJS.ProcessEnv = process.env) =>
  new Encoder(serviceOptions("encoder", addr, vars));
export const indexerClient = (addr: string, vars: NodeJS.ProcessEnv = process.env) =>
  new Indexer(serviceOptions("indexer", addr, vars));

/**
 * The environment of a stack the CLI starts itself on 127.0.0.1 (`tandem up`, the eval's in-process ANN
 * service): plaintext and tokenless, whatever the shell holds for a deployment. Passed on, the servers'
 * TLS/token variables would secure some of those services but not the CLI's view of them, and one
 * HEALTH_PORT would be bound three times. `dropped` names what was left out, so the CLI can say so.
 */
export function loopbackEnv(vars: NodeJS.ProcessEnv): { vars: NodeJS.ProcessEnv; dropped: string[] } {
  const keep: NodeJS.ProcessEnv = {};
  const dropped: string[] = [];
  for (const [name, value] of Object.entries(vars)) {
    if (isSecurityVariable(name)) {
      if (value) dropped.push(name);
    } else keep[name] = value;
  }
  return { vars: keep, dropped: dropped.sort() };
}

/** An UNAVAILABLE the indexer sent itself because its Redis is away: its message names the store. */
export function redisAway(err: Pick<RpcError, "code" | "details">): boolean {
  return err.code === status.UNAVAILABLE && /\bRedis\b/.test(err.details);
}

/** One line for a failed call: the status name and the server's message, or a hint when nothing answered. */
export function describeError(err: unknown, addr?: string): string {
  if (isRpcError(err)) {
    if (err.code === status.UNAVAILABLE && addr && !redisAway(err)) {
      return `nothing answers at ${addr} (${err.details}). Is it running? Start everything with: pnpm tandem up`;
    }
    return `${err.codeName}: ${err.details}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/** "collection x", or "alias x (of collection y)" when `name` resolved through an alias. */
export function collectionLabel(name: string, info: CollectionInfo): string {
  return info.name === name ? `collection ${name}` : `alias ${name} (of collection ${info.name})`;
}

/**
 * Creates the collection when missing (an alias resolves to its collection); refuses one that exists
 * in another space, naming both spaces and the way out.
 */
export async function ensureCollection(
  ann: Ann,
  name: string,
  target: TargetSpace,
  index?: Partial<IndexParams>,
): Promise<{ info: CollectionInfo; created: boolean }> {
  const existing = await ann.find(name);
  if (existing) {
    if (existing.space !== target.space || existing.dims !== target.dims) {
      throw new Error(
        `${collectionLabel(name, existing)} exists in space ${existing.space} (${existing.dims}-d), but the space ` +
          `wanted is ${target.space} (${target.dims}-d), from ${target.from}: vectors of two spaces are never ` +
          `searched together. Choose another name, or drop ${existing.name} first (tandem collections drop ${existing.name} --yes)`,
      );
    }
    return { info: existing, created: false };
  }
  // Index settings the caller leaves out are the ANN service's defaults (0 / "" on the wire).
  const params = index && { m: 0, efConstruction: 0, efSearch: 0, quantization: "", ...index };
  const info = await ann.createCollection(
    { name, space: target.space, dims: target.dims, index: params },
    { deadlineMs: 30_000 },
  );
  return { info, created: true };
}
