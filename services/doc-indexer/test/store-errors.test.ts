import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { AnnClient } from "@tandem/proto";
import { insecure, TandemError, unary } from "@tandem/service-kit";
import { Redis } from "ioredis";
import { freePort } from "../../../test/support/net.js";
import { type RedisServer, startRedisServer } from "../../../test/support/redis-server.js";
import { indexerConfig } from "../src/config.js";
import { connectRedis, redisOptions, storeName } from "../src/redis-connection.js";
import { isStoreUnavailable, storeError, withStoreErrors } from "../src/store-errors.js";

/** The error a promise rejects with (fails the test when it resolves). */
async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof Error, `rejected with a non-Error: ${String(err)}`);
    return err;
  }
  assert.fail("expected a rejection");
}

/** storeError's verdict on `err`: UNAVAILABLE naming the store and saying what the service does. */
function assertUnavailable(err: Error, store: string): void {
  assert.ok(isStoreUnavailable(err), `not taken for an outage: ${err.message}`);
  const mapped = storeError(err, store);
  assert.ok(mapped instanceof TandemError);
  assert.equal(mapped.code, status.UNAVAILABLE);
  assert.ok(mapped.message.startsWith(`${store} is unavailable (`), mapped.message);
  assert.match(mapped.message, /reconnecting/);
  assert.ok(mapped.message.includes(err.message.trim()), "the cause is kept in the message");
}

describe("Redis errors → gRPC status (real ioredis errors from a private redis-server)", () => {
  const dir = mkdtempSync(join(tmpdir(), "store-errors-"));
  let server: RedisServer;
  let config: ReturnType<typeof indexerConfig>;
  let store: string;

  before(async () => {
    server = await startRedisServer(dir, ["--appendonly", "no"]);
    config = indexerConfig({ REDIS_URL: server.url, REDIS_COMMAND_TIMEOUT_MS: "200", REDIS_RECONNECT_MAX_MS: "200" });
    store = storeName(config);
  });

  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("names the store by host and port, never by its password", () => {
    const withPassword = indexerConfig({ REDIS_URL: "redis://:s3cret@10.0.0.7:6380/2" });
    assert.equal(storeName(withPassword), "Redis at 10.0.0.7:6380");
    const sentinels = indexerConfig({
      REDIS_SENTINELS: "10.0.0.1:26379, 10.0.0.2:26379",
      REDIS_SENTINEL_NAME: "queue",
    });
    assert.equal(storeName(sentinels), 'Redis (master "queue" via sentinels 10.0.0.1:26379,10.0.0.2:26379)');
  });

  it("a real fault (WRONGTYPE) is not an outage: it stays as it is, and the server answers INTERNAL", async () => {
    const redis = await connectRedis(config, "api");
    try {
      await redis.set("a-string", "x");
      const err = await failure(redis.hget("a-string", "field"));
      assert.match(err.message, /^WRONGTYPE/);
      assert.equal(isStoreUnavailable(err), false);
      assert.equal(storeError(err, store), err);
    } finally {
      redis.disconnect();
    }
  });

  it("a command unanswered past REDIS_COMMAND_TIMEOUT_MS is UNAVAILABLE", async () => {
    const redis = await connectRedis(config, "api");
    try {
      const err = await failure(redis.blpop("never-filled", 5));
      assert.match(err.message, /^Command timed out/);
      assertUnavailable(err, store);
    } finally {
      redis.disconnect();
    }
  });

  it("Redis killed: the command in flight, and every command while it is away, are UNAVAILABLE", async (t) => {
    const { url, ...options } = redisOptions(config, "api");
    // No command timeout here: the command in flight must fail because the connection dropped.
    const redis = new Redis(url, { ...options, commandTimeout: undefined, lazyConnect: true });
    redis.on("error", () => {});
    try {
      await redis.connect();
      const inFlight = failure(redis.blpop("never-filled", 0));
      await new Promise((r) => setTimeout(r, 100));
      await server.kill();
      const dropped = await inFlight;
      assert.match(dropped.message, /^Reached the max retries per request limit|^Connection is closed/);
      assertUnavailable(dropped, store);
      t.diagnostic(`in flight: ${dropped.message}`);

      // No offline queue on the API side: refused at once while disconnected, not held.
      const t0 = performance.now();
      const refused = await failure(redis.get("anything"));
      assert.ok(performance.now() - t0 < 1000, "refused at once");
      assert.match(refused.message, /^Stream isn't writeable/);
      assertUnavailable(refused, store);
    } finally {
      redis.disconnect();
      await server.restart();
    }
  });

  it("no Redis at start-up: connectRedis says where it looked and why it failed", async () => {
    const nowhere = indexerConfig({
      REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
      REDIS_CONNECT_TIMEOUT_MS: "500",
    });
    const err = await failure(connectRedis(nowhere, "api"));
    assert.match(err.message, /^Redis at 127\.0\.0\.1:\d+ is not reachable \(.*ECONNREFUSED.*\)/);
  });

  it("a gRPC error that mentions a refused connection (the ANN service down) keeps its own status", async () => {
    const ann = new AnnClient(`127.0.0.1:${await freePort()}`, insecure());
    try {
      const err = await failure(unary(ann.listCollections.bind(ann), {}, { timeoutMs: 2000 }));
      assert.equal((err as Error & { code: number }).code, status.UNAVAILABLE);
      assert.equal(isStoreUnavailable(err), false);
      assert.equal(storeError(err, store), err);
    } finally {
      ann.close();
    }
  });

  it("withStoreErrors maps what a handler throws and passes its answers through", async () => {
    const handlers = withStoreErrors(
      {
        ok: async (n: number) => n + 1,
        down: async () => {
          throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" });
        },
        bug: async () => {
          throw new TypeError("x is undefined");
        },
      },
      store,
    );
    assert.equal(await handlers.ok(1), 2);
    const down = await failure(handlers.down());
    assert.ok(down instanceof TandemError && down.code === status.UNAVAILABLE, down.message);
    const bug = await failure(handlers.bug());
    assert.ok(bug instanceof TypeError, "a bug is not dressed up as an outage");
  });
});
