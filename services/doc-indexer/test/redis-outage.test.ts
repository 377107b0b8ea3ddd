import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type ServiceError, status } from "@grpc/grpc-js";
import { Indexer } from "@tandem/client";
import { streamCorpusFile } from "@tandem/corpus";
import { JobState } from "@tandem/proto";
import { type RetryNotice, unary } from "@tandem/service-kit";
import { Redis } from "ioredis";
import { redisAway } from "../../../apps/cli/src/clients.js";
import { followJob } from "../../../apps/cli/src/jobs.js";
import type { RedisServer } from "../../../test/support/redis-server.js";
import { TestStack } from "../../../test/support/stack.js";
import { Keys } from "../src/queue.js";
import type { RunningIndexer } from "../src/service.js";
import { type Clients, clients, createCollection, loadCorpus, SCIFACT, testQueue, waitJob } from "./support/harness.js";

/** Resolves when `check` holds, polling; rejects after `timeoutMs` naming `what`. */
async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `p`, or a rejection naming `what` after `timeoutMs`. */
function within<T>(what: string, p: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

const N = 160;

describe("Redis killed (SIGKILL) mid-job and restarted: nothing lost, nothing twice, the follower waits", () => {
  const stack = new TestStack("outage");
  let redis: RedisServer;
  let api: RunningIndexer;
  const workerLog: string[] = [];
  let c: Clients;

  before(async () => {
    // The durable setting the README recommends for production: every write fsynced before Redis answers.
    redis = await stack.privateRedis([
      "--appendonly",
      "yes",
      "--appendfsync",
      "always",
      "--maxmemory-policy",
      "noeviction",
    ]);
    const ann = await stack.ann();
    const vars = {
      REQUIRE_DURABLE_QUEUE: "true",
      REDIS_RECONNECT_MAX_MS: "500",
      JOB_MAX_DOCS: "1000",
      UPSERT_FLUSH_DOCS: "8",
      MAX_BATCH_DOCS: "8",
    };
    // As deployed: the API alone, the worker in a process of its own; both against this Redis.
    api = await stack.indexer(ann.port, { ...vars, RUN_WORKER: "false" });
    stack.workerProcess(ann.port, workerLog, vars);
    c = clients(stack, api.port, ann.port);
    await createCollection(c.ann, "outage");
  });

  after(() => stack.stop());

  it("JobStatus answers UNAVAILABLE during the outage; the job completes with every document once", {
    timeout: 300_000,
  }, async (t) => {
    const started = performance.now();
    // What `tandem index` does: stream the corpus through Submit, then follow the job.
    const indexer = new Indexer({ address: `127.0.0.1:${api.port}` });
    t.after(() => indexer.close());
    const sub = await streamCorpusFile(indexer, "outage", `${SCIFACT}/corpus.jsonl`, N);
    assert.equal(sub.accepted, N);
    const notices: RetryNotice[] = [];
    const following = followJob(indexer, sub.jobId, {
      bar: false,
      retryForMs: 120_000,
      intervalMs: 200,
      onRetry: (n) => notices.push(n),
    });
    let followerFailed: unknown = null;
    following.catch((err: unknown) => {
      followerFailed = err;
    });

    const mid = await waitJob(c.indexer, sub.jobId, 120_000, (s) => s.docsDone >= 16);
    assert.ok(mid.docsDone < N, `the job should still be running (done ${mid.docsDone})`);
    await redis.kill();
    const killedAt = performance.now();
    t.diagnostic(`Redis SIGKILLed with ${mid.docsDone}/${N} documents acknowledged`);

    const t0 = performance.now();
    let down: ServiceError | null = null;
    try {
      await unary(c.indexer.jobStatus.bind(c.indexer), { jobId: sub.jobId }, { timeoutMs: 10_000 });
    } catch (err) {
      down = err as ServiceError;
    }
    assert.ok(down, "JobStatus answered while Redis was dead");
    assert.equal(down.code, status.UNAVAILABLE, `${status[down.code]}: ${down.details}`);
    assert.match(down.details, new RegExp(`^Redis at 127\\.0\\.0\\.1:${redis.port} is unavailable \\(`));
    assert.match(down.details, /reconnecting/);
    t.diagnostic(
      `JobStatus during the outage: UNAVAILABLE in ${Math.round(performance.now() - t0)} ms: ${down.details}`,
    );

    // The follower meets the outage too, and keeps going.
    await until("the follower retried twice", () => notices.length >= 2, 20_000);
    assert.equal(followerFailed, null, `the follower gave up: ${String(followerFailed)}`);
    assert.ok(
      notices.some((n) => redisAway(n.error)),
      "the follower knew it was waiting for Redis",
    );
    // Down for as long as in the reported incident (restarted by hand 10 s later).
    await new Promise((r) => setTimeout(r, Math.max(0, 10_000 - (performance.now() - killedAt))));
    assert.equal(followerFailed, null, `the follower gave up: ${String(followerFailed)}`);

    await redis.restart();
    const outageMs = performance.now() - killedAt;
    t.diagnostic(`Redis restarted on the same port and directory after ${Math.round(outageMs)} ms`);

    const final = await within("the job completes after the restart", following, 180_000);
    assert.equal(final.state, JobState.JOB_STATE_COMPLETED, final.error);
    assert.equal(final.docsFailed, 0);
    assert.equal(final.docsDone + final.docsSkipped, N);
    t.diagnostic(
      `completed ${Math.round((performance.now() - started) / 1000)} s after Submit: ${final.docsDone} embedded, ` +
        `${final.docsSkipped} skipped as unchanged; the follower retried ${notices.length} times`,
    );

    // Exactly once: one point per document in the ANN service, one content fingerprint per document in Redis.
    const stats = await unary(c.ann.stats.bind(c.ann), { collection: "outage" });
    assert.equal(stats.info?.count, N, "points in the ANN service == documents");
    const ids = loadCorpus(SCIFACT, N).map((d) => d.id);
    const got = await unary(c.ann.get.bind(c.ann), { collection: "outage", ids, withVectors: false });
    assert.deepEqual(got.missing, []);
    const store = new Redis(redis.url);
    try {
      const key = new Keys(stack.prefix).content("outage", Number(stats.info?.createdAtMs));
      assert.equal(await store.hlen(key), N, "content fingerprints == documents");
    } finally {
      store.disconnect();
    }
    const queue = testQueue(stack.prefix, redis.url);
    try {
      const job = await queue.getJob(`${sub.jobId}-0`);
      t.diagnostic(`the job's attempts: ${job?.attemptsStarted} started, ${job?.attemptsMade} made`);
    } finally {
      await queue.close();
    }

    const log = workerLog.join("");
    assert.match(log, /is unavailable: reconnecting/, "the worker noticed the outage");
    assert.match(log, /is back/, "and the store coming back");
  });
});
