import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type ServiceError, status } from "@grpc/grpc-js";
import { encodeVector, JobState } from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import { tandem } from "../../../test/support/cli.js";
import { freePort } from "../../../test/support/net.js";
import { TestStack } from "../../../test/support/stack.js";
import type { RunningIndexer } from "../src/service.js";
import { type Clients, clients, createCollection, loadCorpus, SCIFACT, submit, waitJob } from "./support/harness.js";

async function expectCode(p: Promise<unknown>, code: status): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    assert.equal((err as ServiceError).code, code, (err as ServiceError).details);
    return err as ServiceError;
  }
  assert.fail(`expected ${status[code]}, the call succeeded`);
}

describe("doc-indexer end to end (real Redis, ANN, MiniLM teacher)", () => {
  const stack = new TestStack("indexer-e2e");
  let indexer: RunningIndexer;
  let c: Clients;
  let metricsPort = 0;
  const N = 96;

  before(async () => {
    const ann = await stack.ann();
    metricsPort = await freePort();
    indexer = await stack.indexer(ann.port, {
      JOB_MAX_DOCS: "40",
      UPSERT_FLUSH_DOCS: "16",
      MAX_BATCH_TOKENS: "2048",
      MAX_TEXT_BYTES: "4000",
      MAX_QUEUED_JOBS: "3",
      FILE_ROOT: SCIFACT,
      METRICS_PORT: String(metricsPort),
    });
    c = clients(stack, indexer.port, ann.port);
    await createCollection(c.ann, "scifact");
    await createCollection(c.ann, "other-space", "some-other-model/384", 384);
  });

  after(() => stack.stop());

  it("indexes a slice of scifact from corpus.jsonl and makes it searchable", async () => {
    const sub = await unary(c.indexer.submitFile.bind(c.indexer), {
      collection: "scifact",
      path: `${SCIFACT}/corpus.jsonl`,
      limit: N,
    });
    assert.equal(sub.accepted, N);
    const st = await waitJob(c.indexer, sub.jobId);
    assert.equal(st.state, JobState.JOB_STATE_COMPLETED, st.error);
    assert.equal(st.docsTotal, N);
    assert.equal(st.docsDone, N);
    assert.equal(st.docsFailed, 0);
    // Abstracts longer than MiniLM's 256 tokens are cut, and the status says how many.
    assert.ok(st.docsTruncated > 0 && st.docsTruncated < N, `truncated ${st.docsTruncated}`);
    assert.ok(st.docsPerS > 0 && st.tokensPerS > st.docsPerS, `rates ${st.docsPerS} ${st.tokensPerS}`);
    const stats = await unary(c.ann.stats.bind(c.ann), { collection: "scifact" });
    assert.equal(stats.info?.count, N);

    // A document's own title, encoded as a query by the same teacher, finds that document first.
    const docs = loadCorpus(SCIFACT, N);
    const teacher = indexer.worker!.teacher;
    let top1 = 0;
    for (const d of docs.slice(0, 10)) {
      const [q] = await teacher.embed([d.title], "query");
      const res = await unary(c.ann.search.bind(c.ann), {
        collection: "scifact",
        k: 3,
        query: { $case: "vector", value: encodeVector(q!) },
        filter: [],
        ef: 0,
        exact: false,
        withPayload: true,
        payloadFields: [],
        withVectors: false,
      });
      if (res.hits[0]?.id === d.id) {
        top1++;
        const payload = JSON.parse(res.hits[0].payloadJson) as { title: string; text: string };
        assert.equal(payload.title, d.title);
        assert.ok(payload.text.includes(d.text.slice(0, 50)));
      }
    }
    assert.ok(top1 >= 9, `title -> own document at rank 1 for ${top1}/10`);
  });

  it("does not re-embed unchanged documents; a changed text or payload is written again", async () => {
    const docs = loadCorpus(SCIFACT, 20).map((d) => ({
      id: d.id,
      text: `${d.title} ${d.text}`,
      payloadJson: JSON.stringify({ title: d.title }),
    }));
    // Same id, text and payload as the file submission wrote: nothing to do.
    const again = await submit(c.indexer, "scifact", docs);
    const st = await waitJob(c.indexer, again.jobId);
    assert.equal(st.state, JobState.JOB_STATE_COMPLETED, st.error);
    assert.equal(st.docsSkipped, 20);
    assert.equal(st.docsDone, 0);
    assert.equal(st.tokens, 0, "nothing went through the teacher");

    docs[0]!.text = "A completely new text about zebrafish fin regeneration.";
    docs[1]!.payloadJson = JSON.stringify({ title: "retitled" });
    const changed = await submit(c.indexer, "scifact", docs);
    const st2 = await waitJob(c.indexer, changed.jobId);
    assert.equal(st2.docsDone, 2);
    assert.equal(st2.docsSkipped, 18);
    assert.ok(st2.tokens > 0 && st2.tokens < 40, `only the changed text is embedded (${st2.tokens} tokens)`);
    const got = await unary(c.ann.get.bind(c.ann), {
      collection: "scifact",
      ids: [docs[0]!.id, docs[1]!.id],
      withVectors: false,
    });
    assert.match(JSON.parse(got.points[0]!.payloadJson).text, /zebrafish/);
    assert.equal(JSON.parse(got.points[1]!.payloadJson).title, "retitled");
    const stats = await unary(c.ann.stats.bind(c.ann), { collection: "scifact" });
    assert.equal(stats.info?.count, N, "re-submissions replace, never add");
  });

  it("reports bad documents one by one while the rest are indexed", async () => {
    const res = await submit(c.indexer, "scifact", [
      { id: "good-1", text: "Vitamin D and bone density in older adults.", payloadJson: '{"src":"t"}' },
      { id: "", text: "no id", payloadJson: "" },
      { id: "empty", text: "  ", payloadJson: "" },
      { id: "huge", text: "word ".repeat(1000), payloadJson: "" },
      { id: "badjson", text: "fine text", payloadJson: "{nope" },
      { id: "good-1", text: "duplicate id", payloadJson: "" },
      { id: "good-2", text: "Statins and breast cancer survival.", payloadJson: "" },
    ]);
    assert.equal(res.accepted, 2);
    assert.deepEqual(
      res.rejected.map((r) => [r.index, r.id]),
      [
        [1, ""],
        [2, "empty"],
        [3, "huge"],
        [4, "badjson"],
        [5, "good-1"],
      ],
    );
    assert.match(res.rejected[2]!.reason, /5000 bytes, limit 4000/);
    const st = await waitJob(c.indexer, res.jobId);
    assert.equal(st.state, JobState.JOB_STATE_COMPLETED);
    assert.equal(st.docsDone, 2);
    assert.equal(st.docsFailed, 5);
    assert.equal(st.rejected.length, 5, "the reasons are in the job status too");
    const got = await unary(c.ann.get.bind(c.ann), {
      collection: "scifact",
      ids: ["good-1", "good-2", "huge"],
      withVectors: false,
    });
    assert.deepEqual(got.missing, ["huge"]);
  });

  it("refuses at the door: unknown collection, foreign space, over-full queue", async () => {
    const notFound = await expectCode(
      submit(c.indexer, "nope", [{ id: "a", text: "x", payloadJson: "" }]),
      status.NOT_FOUND,
    );
    assert.match(notFound.details, /"nope" not found/);
    const foreign = await expectCode(
      submit(c.indexer, "other-space", [{ id: "a", text: "x", payloadJson: "" }]),
      status.FAILED_PRECONDITION,
    );
    assert.match(foreign.details, /some-other-model\/384.*all-minilm-l6-v2\/384/);
    await expectCode(
      unary(c.indexer.submitFile.bind(c.indexer), { collection: "scifact", path: "/etc/passwd", limit: 0 }),
      status.INVALID_ARGUMENT,
    );

    // With the queue paused, jobs pile up until MAX_QUEUED_JOBS (3).
    const paused = await unary(c.indexer.pauseQueue.bind(c.indexer), {});
    assert.equal(paused.paused, true);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push((await submit(c.indexer, "scifact", [{ id: `q${i}`, text: `queued ${i}`, payloadJson: "" }])).jobId);
    }
    const waiting = await unary(c.indexer.jobStatus.bind(c.indexer), { jobId: ids[0]! });
    assert.equal(waiting.state, JobState.JOB_STATE_PAUSED);
    await expectCode(
      submit(c.indexer, "scifact", [{ id: "q9", text: "one too many", payloadJson: "" }]),
      status.RESOURCE_EXHAUSTED,
    );
    const resumed = await unary(c.indexer.resumeQueue.bind(c.indexer), {});
    assert.equal(resumed.paused, false);
    for (const id of ids) assert.equal((await waitJob(c.indexer, id)).state, JobState.JOB_STATE_COMPLETED);

    const info = await unary(c.indexer.info.bind(c.indexer), {});
    assert.equal(info.teacher?.space, "all-minilm-l6-v2/384");
    assert.equal(info.teacher?.executionProvider, "cpu");
    const list = await unary(c.indexer.listJobs.bind(c.indexer), { limit: 3 });
    assert.deepEqual(
      list.jobs.map((j) => j.jobId),
      [...ids].reverse(),
    );
  });

  it("a job that cannot succeed fails at once and lands in the dead-letter queue", async () => {
    await createCollection(c.ann, "doomed");
    await unary(c.indexer.pauseQueue.bind(c.indexer), {});
    const sub = await submit(c.indexer, "doomed", [{ id: "d1", text: "never written", payloadJson: "" }]);
    // The collection disappears between the door check and the worker.
    await unary(c.ann.dropCollection.bind(c.ann), { name: "doomed" });
    await unary(c.indexer.resumeQueue.bind(c.indexer), {});
    const st = await waitJob(c.indexer, sub.jobId);
    assert.equal(st.state, JobState.JOB_STATE_FAILED);
    assert.match(st.error, /"doomed" not found/);
    const deadline = Date.now() + 5000;
    let q = await unary(c.indexer.info.bind(c.indexer), {});
    while (q.queue?.deadLettered !== 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      q = await unary(c.indexer.info.bind(c.indexer), {});
    }
    assert.equal(q.queue?.deadLettered, 1);
    assert.equal(q.queue?.failed, 1);
  });

  it("exports docs/s, tokens/s, batch sizes, queue depth and outcomes as metrics", async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    for (const name of [
      "indexer_docs_total",
      "indexer_tokens_total",
      "indexer_batch_docs_bucket",
      "indexer_batch_tokens_bucket",
      "indexer_batch_padding_ratio_bucket",
      "indexer_docs_per_second",
      "indexer_tokens_per_second",
      "indexer_queue_depth",
      "indexer_jobs_total",
    ]) {
      assert.ok(text.includes(name), `missing ${name}`);
    }
    assert.match(text, /indexer_docs_total\{[^}]*outcome="skipped"[^}]*\} (\d+)/);
  });

  it("tandem index streams a local corpus file and follows the job with progress", async () => {
    const file = join(stack.scratch, "local.jsonl");
    writeFileSync(
      file,
      `${[
        { _id: "cli-1", title: "Local", text: "A document streamed by the CLI." },
        { _id: "cli-2", title: "", text: "" },
        { _id: "cli-3", text: "Another one." },
      ]
        .map((d) => JSON.stringify(d))
        .join("\n")}\n`,
    );
    // Asynchronous: the indexer answering the CLI runs in this process.
    const res = await tandem(["index", file, "-c", "scifact", "--indexer", `127.0.0.1:${indexer.port}`]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /rejected #1 "cli-2": empty text/);
    // Piped, so plain progress lines: the last one has every document handled.
    assert.match(res.stderr, /indexing 3\/3 docs \(100%\) \| [\d.]+ docs\/s \| skipped 0 failed 1 \| completed/);
    assert.match(res.stdout, / 2\/3 embedded, 0 unchanged, 1 failed /);
  });
});
