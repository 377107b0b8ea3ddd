import { UnavailableError } from "@tandem/service-kit";

/** Socket errors that mean the store could not be reached (Node sets them as a string `code`). */
const SOCKET_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/**
 * What ioredis and BullMQ say when the connection is gone, not back yet, or too slow: a closed
 * connection, a command refused while disconnected (no offline queue), a command in flight when
 * the connection dropped, a command timeout, a connect timeout, no sentinel or cluster node left.
 */
const CONNECTION_MESSAGES = [
  /^Connection is closed/,
  /^Stream isn't writeable/,
  /^Reached the max retries per request limit/,
  /^Command timed out/,
  /^connect ETIMEDOUT/,
  /^All sentinels are unreachable/,
  /^Failed to refresh slots cache/,
  /^Cluster isn't ready/,
];

/** Replies of a Redis that is up but cannot serve yet: loading its AOF, a replica, mid-failover. */
const TRANSIENT_REPLIES = /^(LOADING|READONLY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN)\b/;

/**
 * Whether `err` says the store is unavailable rather than that something is wrong: retrying
 * later can succeed. gRPC errors (a numeric `code`, e.g. from the ANN service) never are: they
 * carry their own status.
 */
export function isStoreUnavailable(err: unknown): err is Error {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "number") return false;
  if (typeof code === "string" && SOCKET_CODES.has(code)) return true;
  return CONNECTION_MESSAGES.some((m) => m.test(err.message)) || TRANSIENT_REPLIES.test(err.message);
}

/**
 * UNAVAILABLE naming the store and what the service does about it, for a store that is away;
 * any other error unchanged (a real fault stays INTERNAL).
 */
export function storeError(err: unknown, store: string): unknown {
  if (!isStoreUnavailable(err)) return err;
  return new UnavailableError(
    `${store} is unavailable (${err.message.trim()}); the doc-indexer is reconnecting and the queued jobs wait in Redis: retry the call`,
  );
}

type AsyncFn = (...args: never[]) => Promise<unknown>;

/** Handlers whose failures go through `storeError`: every RPC that reads or writes Redis. */
export function withStoreErrors<H extends { [K in keyof H]: AsyncFn }>(handlers: H, store: string): H {
  const wrapped: Partial<Record<keyof H, AsyncFn>> = {};
  for (const name of Object.keys(handlers) as Array<keyof H>) {
    const handler: AsyncFn = handlers[name];
    wrapped[name] = async (...args) => {
      try {
        return await handler(...args);
      } catch (err) {
        throw storeError(err, store);
      }
    };
  }
  return wrapped as H;
}
