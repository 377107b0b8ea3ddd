import { ConfigError, type Logger } from "@tandem/service-kit";
import type { Redis } from "ioredis";
import type { IndexerConfig } from "./config.js";
import { connectRedis, storeName } from "./redis-connection.js";
import { isStoreUnavailable } from "./store-errors.js";

/** The Redis settings a queue's durability depends on; null where Redis did not say. */
export interface StoreSettings {
  appendonly: string | null;
  appendfsync: string | null;
  maxmemoryPolicy: string | null;
}

/** What start-up does about a Redis: refusals stop the process, warnings are logged, `durability` says what an ack is worth. */
export interface StoreVerdict {
  refusals: string[];
  warnings: string[];
  durability: string;
}

/**
 * CONFIG GET of each setting, one by one (Redis before 7 takes one pattern per call). Null when
 * CONFIG is renamed, disabled or not permitted, as managed Redis services often have it: those
 * can be checked only by their operator.
 */
export async function readStoreSettings(redis: Redis): Promise<StoreSettings | { unreadable: string }> {
  const get = async (name: string): Promise<string | null> => {
    const reply = (await redis.call("CONFIG", "GET", name)) as unknown;
    return Array.isArray(reply) && typeof reply[1] === "string" ? reply[1] : null;
  };
  try {
    return {
      appendonly: await get("appendonly"),
      appendfsync: await get("appendfsync"),
      maxmemoryPolicy: await get("maxmemory-policy"),
    };
  } catch (err) {
    if (isStoreUnavailable(err)) throw err;
    return { unreadable: err instanceof Error ? err.message : String(err) };
  }
}

/** What an acknowledged Submit survives under each appendfsync, with AOF on. */
const FSYNC_GUARANTEE: Record<string, string> = {
  always:
    "AOF fsync always: an acknowledged Submit survives a Redis crash and a machine crash (each write is on disk before Redis answers)",
  everysec:
    "AOF fsync everysec: an acknowledged Submit survives a Redis crash; a machine crash or power loss can lose the last second or two of them",
  no: "AOF fsync no: an acknowledged Submit survives a Redis crash; a machine crash loses what the OS had not yet flushed (typically up to 30 s)",
};

export function judgeStore(settings: StoreSettings, requireDurable: boolean, store: string): StoreVerdict {
  const refusals: string[] = [];
  const warnings: string[] = [];
  const policy = settings.maxmemoryPolicy;
  if (policy === null) warnings.push(`${store} did not report its maxmemory-policy: make sure it is noeviction`);
  else if (policy !== "noeviction") {
    refusals.push(
      `${store} has maxmemory-policy ${policy}: under memory pressure it may evict the queue's keys and lose jobs without a trace. ` +
        "Set maxmemory-policy noeviction (redis.conf, or CONFIG SET maxmemory-policy noeviction)",
    );
  }
  let durability: string;
  if (settings.appendonly === null) {
    durability = "unknown (AOF setting not reported)";
    warnings.push(`${store} did not report whether AOF is on: acknowledged Submits may not survive a Redis restart`);
  } else if (settings.appendonly !== "yes") {
    durability =
      "none: AOF is off, an acknowledged Submit lives in Redis's memory (and its last RDB snapshot, if any) and is lost when Redis restarts";
    const aofOff =
      `${store} has AOF off (appendonly ${settings.appendonly}): acknowledged Submits are lost if Redis restarts. ` +
      "Turn it on (appendonly yes)";
    if (requireDurable) refusals.push(`REQUIRE_DURABLE_QUEUE=true and ${aofOff}`);
    else warnings.push(`${aofOff}, or set REQUIRE_DURABLE_QUEUE=true to refuse such a Redis`);
  } else {
    const fsync = settings.appendfsync ?? "unknown";
    durability = FSYNC_GUARANTEE[fsync] ?? `AOF on, appendfsync ${fsync}`;
    if (fsync === "no") warnings.push(`${store} has appendfsync no: ${durability}`);
  }
  return { refusals, warnings, durability };
}

/**
 * The start-up check of both indexer processes (API and worker): refuses (ConfigError: exit 2,
 * no stack) a Redis that evicts keys, or one without AOF when REQUIRE_DURABLE_QUEUE=true; warns
 * about AOF off otherwise, and when Redis does not let its settings be read.
 */
export async function checkStore(config: IndexerConfig, log: Logger): Promise<void> {
  const store = storeName(config);
  const redis = await connectRedis(config, "api");
  let settings: Awaited<ReturnType<typeof readStoreSettings>>;
  try {
    settings = await readStoreSettings(redis);
  } finally {
    redis.disconnect();
  }
  if ("unreadable" in settings) {
    log.warn(
      { reason: settings.unreadable },
      `${store} does not allow CONFIG GET (managed Redis?): could not check maxmemory-policy (must be noeviction) nor AOF persistence`,
    );
    return;
  }
  const verdict = judgeStore(settings, config.REQUIRE_DURABLE_QUEUE, store);
  if (verdict.refusals.length > 0) throw new ConfigError(verdict.refusals);
  for (const w of verdict.warnings) log.warn({ ...settings }, w);
  log.info({ ...settings, durability: verdict.durability }, `${store}: queue durability`);
}
