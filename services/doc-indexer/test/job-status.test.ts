// JobStatus and ListJobs against the real Redis, counted as the server sees them (MONITOR): a
// status is two round trips, a listing three, whatever the number of jobs in a submission.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { JobState } from "@tandem/proto";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { REDIS_URL, TestStack } from "../../../test/support/stack.js";
import { JobStatusView } from "../src/job-status.js";
import { DEAD_LETTER_QUEUE_NAME, type IndexQueue, jobId, Keys, QUEUE_NAME } from "../src/queue.js";
import { Submissions } from "../src/submissions.js";

const CHUNKS = 30;

/** Round trips of one client, from the commands Redis ran for it: a MULTI…EXEC block is one. */
function roundTrips(commands: string[]): number {
  let trips = 0;
  let inMulti = false;
  for (const c of commands) {
    if (c === "multi") {
      trips++;
      inMulti = true;
    } else if (c === "exec") inMulti = false;
    else if (!inMulti) trips++;
  }
  return trips;
}

describe("the job-status view reads Redis in a constant number of round trips", () => {
  const stack = new TestStack("job-status");
  const keys = new Keys(stack.prefix);
  // The view's own client, so that what MONITOR reports for it is the view's doing alone.
  const redis = new Redis(REDIS_URL);
  const queue: IndexQueue = new Queue(QUEUE_NAME, { connection: { url: REDIS_URL }, prefix: stack.prefix });
  const deadLetters = new Queue(DEAD_LETTER_QUEUE_NAME, { connection: { url: REDIS_URL }, prefix: stack.prefix });
  const view = new JobStatusView(redis, queue, deadLetters, keys);
  const seen: string[] = [];
  const ids = ["s-one", "s-two"];

  before(async () => {
    stack.defer(() => redis.disconnect());
    stack.defer(() => deadLetters.close());
    stack.defer(() => queue.close());
    // Paused, with no worker: every job stays waiting.
    await queue.pause();
    const submissions = new Submissions(redis, keys, 100);
    for (const id of ids) {
      await queue.addBulk(
        Array.from({ length: CHUNKS }, (_, c) => ({
          name: "docs" as const,
          data: { submissionId: id, collection: "c", offset: c, docs: [] },
          opts: { jobId: jobId(id, c) },
        })),
      );
      await submissions.record(id, { kind: "index", collection: "c", chunks: CHUNKS, total: CHUNKS * 2, rejected: [] });
    }
    const addr = /addr=(\S+)/.exec(String(await redis.client("INFO")))?.[1];
    assert.ok(addr, "the view's client address");
    // monitor() answers on a connection of its own: the client it came from must be closed too,
    // or its socket keeps the test process alive after every test has passed.
    const source = new Redis(REDIS_URL);
    stack.defer(() => source.disconnect());
    const monitor = await source.monitor();
    stack.defer(() => monitor.disconnect());
    monitor.on("monitor", (_time: string, args: string[], source: string) => {
      if (source === addr) seen.push(String(args[0]).toLowerCase());
    });
  });

  after(() => stack.stop());

  /** The commands `run` sent, once Redis has reported them all. */
  async function counted(run: () => Promise<unknown>): Promise<string[]> {
    seen.length = 0;
    await run();
    await new Promise((r) => setTimeout(r, 300));
    return [...seen];
  }

  it(`a status of ${CHUNKS} jobs: two round trips (the record, then one MULTI over every job)`, async () => {
    let status: Awaited<ReturnType<JobStatusView["status"]>> | undefined;
    const commands = await counted(async () => {
      status = await view.status("s-one");
    });
    assert.equal(status?.state, JobState.JOB_STATE_PAUSED);
    assert.equal(status?.docsTotal, CHUNKS * 2);
    assert.equal(roundTrips(commands), 2, commands.join(" "));
  });

  it("a listing of two submissions: three round trips (the ids, the records, the jobs)", async () => {
    let listed: Awaited<ReturnType<JobStatusView["list"]>> = [];
    const commands = await counted(async () => {
      listed = await view.list(10);
    });
    assert.deepEqual(
      listed.map((s) => s.jobId),
      [...ids].reverse(),
    );
    assert.equal(roundTrips(commands), 3, commands.join(" "));
  });

  it("an unknown job: NOT_FOUND after one round trip", async () => {
    const commands = await counted(() => assert.rejects(view.status("s-none"), /job "s-none" not found/));
    assert.equal(roundTrips(commands), 1, commands.join(" "));
  });
});
