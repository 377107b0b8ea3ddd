import type { Logger } from "@tandem/service-kit";
import { Redis, type RedisOptions } from "ioredis";
import type { IndexerConfig } from "./config.js";

/**
 * How the indexer talks to Redis, decided once for each side:
 *
 * - `api` (the gRPC producer: Submit, JobStatus, ListJobs, Reindex, Pause/Resume, Info) fails
 *   fast. No offline queue and no resend of a command that was in flight when the connection
 *   dropped: while Redis is away every call fails at once and the handler answers UNAVAILABLE
 *   (store-errors.ts), so a client backs off and retries instead of holding a call open for an
 *   outage of unknown length. REDIS_COMMAND_TIMEOUT_MS bounds a command on a connection that
 *   is open but silent (a partition sends no reset).
 * - `worker` waits: a job's own writes (content hashes, progress) queue up while Redis is away
 *   and go out when it is back, as BullMQ's worker connections do, so an outage does not spend
 *   one of the job's JOB_ATTEMPTS.
 *
 * Both reconnect for ever, the delay doubling from 100 ms up to REDIS_RECONNECT_MAX_MS.
 */
export type RedisSide = "api" | "worker";

/**
 * ioredis options for one side; BullMQ passes the same object (with `url`) to the ioredis it
 * creates. The reconnect strategy is always a function: BullMQ's type has no "never reconnect".
 */
export type ConnectionSettings = Omit<RedisOptions, "retryStrategy"> & {
  url: string;
  retryStrategy: (times: number) => number;
};

export function redisOptions(config: IndexerConfig, side: RedisSide): ConnectionSettings {
  const maxDelay = config.REDIS_RECONNECT_MAX_MS;
  const common: ConnectionSettings = {
    url: config.REDIS_URL,
    connectTimeout: config.REDIS_CONNECT_TIMEOUT_MS,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times - 1, 16), maxDelay),
    ...sentinelOptions(config),
  };
  if (side === "worker") return { ...common, maxRetriesPerRequest: null, enableOfflineQueue: true };
  return {
    ...common,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS,
  };
}

function sentinelOptions(config: IndexerConfig): Pick<RedisOptions, "sentinels" | "name"> {
  if (config.REDIS_SENTINELS.length === 0) return {};
  return { sentinels: config.REDIS_SENTINELS, name: config.REDIS_SENTINEL_NAME };
}

/** What error messages and logs call the store: where it is, never its password. */
export function storeName(config: IndexerConfig): string {
  if (config.REDIS_SENTINELS.length > 0) {
    const via = config.REDIS_SENTINELS.map((s) => `${s.host}:${s.port}`).join(",");
    return `Redis (master "${config.REDIS_SENTINEL_NAME}" via sentinels ${via})`;
  }
  try {
    const u = new URL(config.REDIS_URL);
    return `Redis at ${u.hostname}:${u.port || 6379}`;
  } catch {
    return "Redis";
  }
}

/**
 * A connected client: resolves once Redis answers, or rejects with the reason after
 * REDIS_CONNECT_TIMEOUT_MS (the client is then closed). Connected first so the start-up checks
 * run before anything is written, and so the api side, which has no offline queue, never sends
 * a command into a connection that is not up yet.
 */
export async function connectRedis(config: IndexerConfig, side: RedisSide): Promise<Redis> {
  const { url, ...options } = redisOptions(config, side);
  const redis = new Redis(url, { ...options, lazyConnect: true });
  // connect() rejects with a bare "Connection is closed."; the socket's own error says why.
  let lastError = "";
  const noteError = (err: Error) => {
    lastError = err.message;
  };
  redis.on("error", noteError);
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    const reason = lastError || (err instanceof Error ? err.message : String(err));
    throw new Error(`${storeName(config)} is not reachable (${reason}): start it, or point REDIS_URL at one`);
  } finally {
    redis.off("error", noteError);
  }
  return redis;
}

/**
 * Logs a connection's outages once each (ioredis reports every failed reconnect as an error,
 * every few hundred milliseconds): one warning when the store goes away, one line when it is back.
 */
export class ConnectionWatch {
  private downSince = 0;

  constructor(
    private readonly store: string,
    private readonly log: Logger,
  ) {}

  /** Follows a client's error / ready events. */
  watch(redis: Redis): void {
    redis.on("error", (err: Error) => this.down(err));
    redis.on("ready", () => this.up());
  }

  down(err: Error): void {
    if (this.downSince) return;
    this.downSince = Date.now();
    this.log.warn({ err: err.message }, `${this.store} is unavailable: reconnecting`);
  }

  up(): void {
    if (!this.downSince) return;
    this.log.info({ downMs: Date.now() - this.downSince }, `${this.store} is back`);
    this.downSince = 0;
  }
}
