import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { JobState } from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import { exited, TestStack } from "../../../test/support/stack.js";
import { type Clients, clients, createCollection, jobStatus, loadCorpus, SCIFACT, waitJob } from "./support/harness.js";

/** Worker settings shared by the API and both worker processes: short locks so a dead worker is noticed fast. */
const WORKER_VARS = {
  JOB_MAX_DOCS: "1000",
  UPSERT_FLUSH_DOCS: "8",
  MAX_BATCH_DOCS: "8",
  LOCK_DURATION_MS: "3000",
  STALLED_INTERVAL_MS: "1000",
  FILE_ROOT: SCIFACT,
};

describe("a worker process killed mid-job", () => {
  const stack = new TestStack("indexer-kill");
  let annPort = 0;
  let c: Clients;
  const logs: string[][] = [];
  const spawnWorker = (log: string[], vars: Record<string, string> = {}): ChildProcess =>
    stack.workerProcess(annPort, log, { ...WORKER_VARS, ...vars });

  before(async () => {
    const ann = await stack.ann();
    annPort = ann.port;
    // The API alone: the work happens in separate worker processes.
    const api = await stack.indexer(ann.port, { ...WORKER_VARS, RUN_WORKER: "false" });
    c = clients(stack, api.port, ann.port);
    await createCollection(c.ann, "killed");
    await createCollection(c.ann, "released");
  });

  after(() => stack.stop());

  it("SIGKILL: the job completes on another worker, no vector missing or duplicated", async (t) => {
    const N = 160;
    const sub = await unary(c.indexer.submitFile.bind(c.indexer), {
      collection: "killed",
      path: `${SCIFACT}/corpus.jsonl`,
      limit: N,
    });
    assert.equal(sub.accepted, N);

    logs.push([]);
    const first = spawnWorker(logs[0]!);
    const mid = await waitJob(c.indexer, sub.jobId, 90_000, (s) => s.docsDone >= 24);
    assert.ok(mid.docsDone < N, `the job should still be running (done ${mid.docsDone})`);
    first.kill("SIGKILL");
    await exited(first);
    const atKill = await jobStatus(c.indexer, sub.jobId);
    t.diagnostic(`killed the first worker with ${atKill.docsDone}/${N} documents acknowledged`);
    assert.equal(atKill.state, JobState.JOB_STATE_ACTIVE, "a dead worker's job stays active until its lock expires");

    logs.push([]);
    const second = spawnWorker(logs[1]!);
    let st: Awaited<ReturnType<typeof waitJob>>;
    try {
      st = await waitJob(c.indexer, sub.jobId, 120_000);
    } catch (err) {
      t.diagnostic(logs.flat().join(""));
      throw err;
    }
    assert.equal(st.state, JobState.JOB_STATE_COMPLETED, st.error);
    // The second worker skipped (by content hash) what the first had acknowledged, and did the rest.
    assert.equal(st.docsDone + st.docsSkipped, N);
    assert.ok(st.docsSkipped >= 24, `skipped ${st.docsSkipped}`);
    assert.ok(
      logs[1]!.join("").includes("stalled") || logs[1]!.join("").includes("job completed"),
      "the second worker picked the job up",
    );

    const stats = await unary(c.ann.stats.bind(c.ann), { collection: "killed" });
    assert.equal(stats.info?.count, N, "count in the ANN service == documents");
    const ids = loadCorpus(SCIFACT, N).map((d) => d.id);
    const got = await unary(c.ann.get.bind(c.ann), { collection: "killed", ids, withVectors: true });
    assert.deepEqual(got.missing, []);
    assert.equal(got.points.length, N);
    for (const p of got.points) assert.equal(p.vector.byteLength, 384 * 4);

    second.kill("SIGTERM");
    await exited(second);
    assert.equal(second.exitCode, 0, "graceful shutdown exits cleanly");
  });

  it("SIGTERM past the grace period: the job is released, not failed, and finished elsewhere", async (t) => {
    const N = 120;
    const sub = await unary(c.indexer.submitFile.bind(c.indexer), {
      collection: "released",
      path: `${SCIFACT}/corpus.jsonl`,
      limit: N,
    });
    const log: string[] = [];
    const w = spawnWorker(log, { SHUTDOWN_GRACE_MS: "0" });
    await waitJob(c.indexer, sub.jobId, 90_000, (s) => s.docsDone >= 16);
    const t0 = Date.now();
    w.kill("SIGTERM");
    await exited(w);
    t.diagnostic(`worker stopped ${Date.now() - t0} ms after SIGTERM`);
    assert.equal(w.exitCode, 0);
    assert.match(log.join(""), /job released on shutdown/);
    const mid = await jobStatus(c.indexer, sub.jobId);
    assert.equal(mid.state, JobState.JOB_STATE_WAITING, "back in the queue at once, no lock expiry needed");
    assert.ok(mid.docsDone < N);

    spawnWorker([]);
    const st = await waitJob(c.indexer, sub.jobId, 120_000);
    assert.equal(st.state, JobState.JOB_STATE_COMPLETED, st.error);
    assert.equal(st.docsDone + st.docsSkipped, N);
    const stats = await unary(c.ann.stats.bind(c.ann), { collection: "released" });
    assert.equal(stats.info?.count, N);
  });
});
